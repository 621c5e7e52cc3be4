//! Several named listeners, as Kafka's `SocketServerConfigs`: `listeners` and `advertised.listeners` are
//! lists of `NAME://host:port`, and `listener.security.protocol.map` says which security protocol each name
//! speaks. A listener named after a protocol (`PLAINTEXT://...`) needs no entry of its own in the map.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::SecurityProtocol;
use super::{ConfigError, Endpoint, invalid};

/// Kafka's default `listener.security.protocol.map`: every protocol names a listener after itself.
pub const DEFAULT_SECURITY_PROTOCOL_MAP: &str =
    "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT";

/// The protocols brook serves today; a listener mapped to another one is refused at start.
pub const SUPPORTED_PROTOCOLS: [SecurityProtocol; 1] = [SecurityProtocol::Plaintext];

/// One `NAME://host:port` entry of `listeners` or `advertised.listeners`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerEndpoint {
    /// Upper case, as Kafka normalises listener names (`ListenerName.normalised`).
    pub name: String,
    pub endpoint: Endpoint,
}

impl fmt::Display for ListenerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = &self.endpoint.host;
        if host.contains(':') {
            write!(f, "{}://[{host}]:{}", self.name, self.endpoint.port)
        } else {
            write!(f, "{}://{host}:{}", self.name, self.endpoint.port)
        }
    }
}

/// `listener.security.protocol.map`: listener name -> security protocol, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityProtocolMap(Vec<(String, SecurityProtocol)>);

impl Default for SecurityProtocolMap {
    fn default() -> Self {
        parse_security_protocol_map(
            "listener.security.protocol.map",
            DEFAULT_SECURITY_PROTOCOL_MAP,
        )
        .expect("Kafka's default listener.security.protocol.map parses")
    }
}

impl SecurityProtocolMap {
    /// The protocol of the listener called `name` (upper case), if the map names it.
    pub fn get(&self, name: &str) -> Option<SecurityProtocol> {
        self.0
            .iter()
            .find(|(listener, _)| listener == name)
            .map(|(_, protocol)| *protocol)
    }

    /// Every name the map knows, in its order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
    }
}

impl fmt::Display for SecurityProtocolMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, protocol)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{name}:{protocol}")?;
        }
        Ok(())
    }
}

/// A listener clients and other brokers connect to (any listener that is not a controller listener), with
/// what it tells them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerListener {
    pub name: String,
    pub security_protocol: SecurityProtocol,
    /// Where it accepts connections (port 0: an ephemeral port).
    pub bind: Endpoint,
    /// What it tells clients, before the bound port is known.
    pub advertised: Advertised,
}

/// What a broker listener advertises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Advertised {
    /// `advertised.listeners` is unset: the address the listener bound, with the real port (this machine's
    /// name when bound to every interface), as a single brook always advertised.
    Bound,
    /// Its `advertised.listeners` entry; port 0 stands for the bound port.
    Given(Endpoint),
    /// `advertised.listeners` is set and leaves this listener out: it accepts connections but is not
    /// registered, as in Kafka.
    Hidden,
}

impl BrokerListener {
    /// What a listener bound to `bound` advertises when nothing else is said.
    pub fn bound_endpoint(bound: SocketAddr) -> Endpoint {
        resolve_advertised(&BOUND, bound)
    }

    /// The endpoint registered for clients once the listener is bound to `bound`; None for a listener that
    /// is not advertised.
    pub fn advertised_endpoint(&self, bound: SocketAddr) -> Option<Endpoint> {
        match &self.advertised {
            Advertised::Bound => Some(Self::bound_endpoint(bound)),
            Advertised::Given(template) => Some(resolve_advertised(template, bound)),
            Advertised::Hidden => None,
        }
    }
}

/// The template that stands for the bound address: every interface, port 0.
const BOUND: Endpoint = Endpoint {
    host: String::new(),
    port: 0,
};

/// `template` with port 0 and a wildcard host replaced by what the socket actually bound.
pub(super) fn resolve_advertised(template: &Endpoint, bound: SocketAddr) -> Endpoint {
    let port = if template.port == 0 {
        bound.port()
    } else {
        template.port
    };
    let host = if is_wildcard_host(&template.host) {
        if bound.ip().is_unspecified() {
            super::local_hostname().unwrap_or_else(|| "localhost".into())
        } else {
            bound.ip().to_string()
        }
    } else {
        template.host.clone()
    };
    Endpoint { host, port }
}

/// A host that means "every interface": no address a client can connect to.
pub(super) fn is_wildcard_host(host: &str) -> bool {
    matches!(host, "" | "0.0.0.0" | "::" | "[::]")
}

/// The security protocol called `name` (case-insensitive, as Kafka's `SecurityProtocol.forName`).
pub fn security_protocol_named(name: &str) -> Option<SecurityProtocol> {
    [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ]
    .into_iter()
    .find(|p| p.name().eq_ignore_ascii_case(name))
}

/// Parses a comma-separated list of `NAME://host:port`. `distinct_ports` is Kafka's rule for `listeners`
/// (two listeners share a port only when one is on an IPv4 address and the other on an IPv6 one); it does
/// not apply to `advertised.listeners`, where a listener may advertise another's address.
pub(super) fn parse_listener_list(
    key: &str,
    value: &str,
    distinct_ports: bool,
) -> Result<Vec<ListenerEndpoint>, ConfigError> {
    let bad = |reason: String| invalid(key, value, &reason);
    let mut out: Vec<ListenerEndpoint> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = parse_listener_entry(entry).ok_or_else(|| {
            bad(format!(
                "Unable to parse {entry} to a broker endpoint (expected NAME://host:port)"
            ))
        })?;
        if out.iter().any(|l| l.name == parsed.name) {
            return Err(bad(format!(
                "Each listener must have a different name, listeners: {value}"
            )));
        }
        out.push(parsed);
    }
    if out.is_empty() {
        return Err(bad("expected NAME://host:port[,NAME://host:port...]".into()));
    }
    if distinct_ports {
        check_distinct_ports(&out)
            .map_err(|reason| bad(format!("{reason}, listeners: {value}")))?;
    }
    Ok(out)
}

/// `NAME://host:port`, `NAME://:port` (every interface) or `NAME://[v6]:port`.
fn parse_listener_entry(entry: &str) -> Option<ListenerEndpoint> {
    let (name, address) = entry.split_once("://")?;
    let (host, port) = address.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host_ok = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '%' | '.' | '_' | ':'));
    if name.is_empty() || !host_ok {
        return None;
    }
    Some(ListenerEndpoint {
        name: name.to_ascii_uppercase(),
        endpoint: Endpoint {
            host: host.to_string(),
            port: port.parse().ok()?,
        },
    })
}

fn check_distinct_ports(listeners: &[ListenerEndpoint]) -> Result<(), String> {
    let mut ports: Vec<u16> = listeners.iter().map(|l| l.endpoint.port).collect();
    ports.sort_unstable();
    ports.dedup();
    // Port 0 picks a fresh ephemeral port for each listener.
    for port in ports.into_iter().filter(|&p| p != 0) {
        let ips: Vec<Option<IpAddr>> = listeners
            .iter()
            .filter(|l| l.endpoint.port == port)
            .map(|l| l.endpoint.host.parse::<IpAddr>().ok())
            .collect();
        let fine = match ips.as_slice() {
            [_] => true,
            [Some(x), Some(y)] => x.is_ipv4() != y.is_ipv4(),
            _ => false,
        };
        if !fine {
            return Err(format!(
                "Each listener must have a different port unless exactly one listener has an IPv4 \
                 address and the other IPv6 address (port {port})"
            ));
        }
    }
    Ok(())
}

/// Parses `NAME:PROTOCOL,...`. A name given twice is an error (Kafka's documentation: "each listener name
/// should only appear once in the map").
pub(super) fn parse_security_protocol_map(
    key: &str,
    value: &str,
) -> Result<SecurityProtocolMap, ConfigError> {
    let mut out: Vec<(String, SecurityProtocol)> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, protocol)) = entry.split_once(':') else {
            return Err(invalid(
                key,
                value,
                &format!(
                    "Error parsing configuration property '{key}': '{entry}' is not NAME:PROTOCOL"
                ),
            ));
        };
        let name = name.trim().to_ascii_uppercase();
        let protocol = security_protocol_named(protocol.trim()).ok_or_else(|| {
            invalid(
                key,
                value,
                &format!(
                    "Invalid security protocol `{}` defined in {key}",
                    protocol.trim()
                ),
            )
        })?;
        if name.is_empty() {
            return Err(invalid(key, value, "a listener name is empty"));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(invalid(
                key,
                value,
                &format!("listener name {name} appears more than once"),
            ));
        }
        out.push((name, protocol));
    }
    Ok(SecurityProtocolMap(out))
}

/// A listener or controller listener name as Kafka normalises it: trimmed, upper case.
pub(super) fn parse_listener_name(key: &str, value: &str) -> Result<String, ConfigError> {
    let name = value.trim();
    if name.is_empty() || name.contains(',') || name.contains("://") {
        return Err(invalid(key, value, "expected one listener name"));
    }
    Ok(name.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_list_parses_names_hosts_and_ports() {
        let parsed = parse_listener_list(
            "listeners",
            "plaintext://127.0.0.1:9092, CONTROLLER://:9093,INTERNAL://[::1]:0",
            true,
        )
        .unwrap();
        let shown: Vec<String> = parsed.iter().map(|l| l.to_string()).collect();
        assert_eq!(
            shown,
            [
                "PLAINTEXT://127.0.0.1:9092",
                "CONTROLLER://:9093",
                "INTERNAL://[::1]:0"
            ]
        );
    }

    #[test]
    fn listener_list_refuses_bad_entries_duplicate_names_and_ports() {
        for (value, expected) in [
            ("PLAINTEXT://127.0.0.1", "Unable to parse"),
            ("127.0.0.1:9092", "Unable to parse"),
            ("://127.0.0.1:9092", "Unable to parse"),
            ("PLAINTEXT://h:70000", "Unable to parse"),
            ("PLAINTEXT://h o:1", "Unable to parse"),
            ("A://h:1,a://h:2", "different name"),
            ("A://h:1,B://g:1", "different port"),
            ("A://127.0.0.1:1,B://127.0.0.2:1", "different port"),
            ("", "expected NAME://host:port"),
        ] {
            let err = parse_listener_list("listeners", value, true)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected) && err.contains("listeners"),
                "{value}: {err}"
            );
        }
        // Port 0 is a fresh port each; an IPv4 and an IPv6 address may share one; advertised listeners may
        // repeat a port.
        parse_listener_list("listeners", "A://h:0,B://h:0", true).unwrap();
        parse_listener_list("listeners", "A://127.0.0.1:1,B://[::1]:1", true).unwrap();
        parse_listener_list("advertised.listeners", "A://h:1,B://h:1", false).unwrap();
    }

    #[test]
    fn security_protocol_map_round_trips_and_refuses_nonsense() {
        let default = SecurityProtocolMap::default();
        assert_eq!(default.to_string(), DEFAULT_SECURITY_PROTOCOL_MAP);
        assert_eq!(default.get("SSL"), Some(SecurityProtocol::Ssl));
        assert_eq!(default.get("INTERNAL"), None);
        let map =
            parse_security_protocol_map("m", "internal:plaintext, CONTROLLER:PLAINTEXT").unwrap();
        assert_eq!(map.to_string(), "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT");
        for bad in ["A:TLS", "A", "A:PLAINTEXT,a:SSL", ":PLAINTEXT"] {
            assert!(parse_security_protocol_map("m", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn advertised_endpoint_fills_in_the_bound_port_and_host() {
        let bound: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        let listener = |advertised: Advertised| BrokerListener {
            name: "PLAINTEXT".into(),
            security_protocol: SecurityProtocol::Plaintext,
            bind: Endpoint {
                host: "127.0.0.1".into(),
                port: 0,
            },
            advertised,
        };
        let endpoint = |host: &str, port| Endpoint {
            host: host.into(),
            port,
        };
        assert_eq!(
            listener(Advertised::Bound).advertised_endpoint(bound),
            Some(endpoint("127.0.0.1", 40123))
        );
        let everywhere: SocketAddr = "0.0.0.0:40123".parse().unwrap();
        let host = crate::config::local_hostname().unwrap_or_else(|| "localhost".into());
        assert_eq!(
            listener(Advertised::Bound).advertised_endpoint(everywhere),
            Some(endpoint(&host, 40123))
        );
        assert_eq!(
            listener(Advertised::Given(endpoint("broker.example", 0))).advertised_endpoint(bound),
            Some(endpoint("broker.example", 40123))
        );
        assert_eq!(
            listener(Advertised::Given(endpoint("broker.example", 19092)))
                .advertised_endpoint(bound),
            Some(endpoint("broker.example", 19092))
        );
        assert_eq!(
            listener(Advertised::Hidden).advertised_endpoint(bound),
            None
        );
    }
}
