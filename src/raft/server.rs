//! The server side of the controller listener: raft RPCs into openraft, forwarded writes and leader calls
//! into the [`Core`].

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::quorum::Core;
use super::transport::{Request, RequestFrame, Response, read_frame, write_frame};
use super::types::Snapshot;

/// Peer connections served at once (voters and observers, a few each); one more is refused at once.
const MAX_CONNECTIONS: usize = 256;

/// Serves the controller listener until the task is aborted; `stop` turning true closes every connection
/// (a peer must not keep talking to a stopped node through an old connection).
pub fn spawn(
    listener: TcpListener,
    core: Arc<Core>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "controller listener accept failed");
                    // Out of descriptors and the like: give the system a moment rather than spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "too many controller connections; refusing one");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let core = core.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    served = serve_connection(stream, peer, &core) => {
                        match served {
                            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                                tracing::warn!(%peer, error = %e, "closing a controller connection that sent a bad frame");
                            }
                            Err(e) => tracing::debug!(%peer, error = %e, "controller connection closed"),
                            Ok(()) => {}
                        }
                    }
                    _ = stop.wait_for(|stop| *stop) => {}
                }
                drop(slot);
            });
        }
    })
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    core: &Core,
) -> std::io::Result<()> {
    while let Some(frame) = read_frame::<_, RequestFrame>(&mut stream).await? {
        if !core.voters.agrees_with(&frame.voters) {
            core.voters
                .record_conflict(frame.from, &format!("calling from {peer}"), &frame.voters);
            let voters = core.voters.voters().clone();
            write_frame(&mut stream, &Response::VotersDiffer { voters }).await?;
            return Ok(());
        }
        if frame.to != core.node_id {
            tracing::warn!(
                from = frame.from,
                to = frame.to,
                "refusing a controller frame meant for another node"
            );
            write_frame(
                &mut stream,
                &Response::WrongNode {
                    node_id: core.node_id,
                },
            )
            .await?;
            return Ok(());
        }
        let response = handle(core, frame.body).await;
        write_frame(&mut stream, &response).await?;
    }
    Ok(())
}

async fn handle(core: &Core, request: Request) -> Response {
    let raft = &core.raft;
    match request {
        Request::AppendEntries(rpc) => match raft.append_entries(rpc).await {
            Ok(r) => Response::AppendEntries(r),
            Err(e) => Response::Failed(e.to_string()),
        },
        Request::Vote(rpc) => match raft.vote(rpc).await {
            Ok(r) => Response::Vote(r),
            Err(e) => Response::Failed(e.to_string()),
        },
        Request::PreVote(rpc) => match raft.pre_vote(rpc).await {
            Ok(r) => Response::Vote(r),
            Err(e) => Response::Failed(e.to_string()),
        },
        Request::Snapshot { vote, meta, data } => {
            let snapshot = Snapshot {
                meta,
                snapshot: data,
            };
            match raft.install_full_snapshot(vote, snapshot).await {
                Ok(r) => Response::Snapshot(r),
                Err(e) => Response::Failed(e.to_string()),
            }
        }
        Request::TransferLeader(rpc) => match raft.handle_transfer_leader(rpc).await {
            Ok(r) => Response::TransferLeader(r),
            Err(e) => Response::Failed(e.to_string()),
        },
        Request::Write(command) => core.local_write(command).await,
        Request::CallLeader(request) => core.local_call(request).await,
        Request::AddLearner { node_id, address } => core.local_add_learner(node_id, address).await,
    }
}
