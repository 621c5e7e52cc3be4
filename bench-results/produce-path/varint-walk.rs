// Throwaway micro-benchmark: the record walk of validate_records with the old varint loop and the new inline path.
use std::hint::black_box;
use std::time::Instant;

fn put_uvarint(out: &mut Vec<u8>, mut z: u64) { while z >= 0x80 { out.push((z as u8 & 0x7f) | 0x80); z >>= 7; } out.push(z as u8); }
fn put_varlong(out: &mut Vec<u8>, v: i64) { put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64) }

#[inline(never)]
fn raw_loop(buf: &[u8], pos: &mut usize, max_bytes: u32, last_bits: u32) -> Result<u64, ()> {
    let mut raw = 0u64;
    for i in 0..max_bytes {
        let b = *buf.get(*pos).ok_or(())?;
        *pos += 1;
        if i == max_bytes - 1 && u32::from(b) >> last_bits != 0 { break; }
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 { return Ok(raw); }
    }
    Err(())
}
#[inline]
fn raw_fast(buf: &[u8], pos: &mut usize, max_bytes: u32, last_bits: u32) -> Result<u64, ()> {
    match buf.get(*pos..).unwrap_or_default() {
        [b0, ..] if *b0 < 0x80 => { *pos += 1; Ok(u64::from(*b0)) }
        [b0, b1, ..] if *b1 < 0x80 => { *pos += 2; Ok(u64::from(b0 & 0x7f) | (u64::from(*b1) << 7)) }
        _ => raw_loop(buf, pos, max_bytes, last_bits),
    }
}
fn walk(buf: &[u8], count: usize, raw: fn(&[u8], &mut usize, u32, u32) -> Result<u64, ()>) -> Result<i64, ()> {
    let zz = |r: u64| ((r >> 1) as i64) ^ -((r & 1) as i64);
    let mut pos = 0; let mut sum = 0i64;
    for _ in 0..count {
        let len = zz(raw(buf, &mut pos, 5, 4)?) as usize;
        let body = &buf[pos..pos + len]; pos += len;
        let mut p = 1;
        let ts = zz(raw(body, &mut p, 10, 1)?);
        let od = zz(raw(body, &mut p, 5, 4)?);
        let k = zz(raw(body, &mut p, 5, 4)?); if k > 0 { p += k as usize; }
        let v = zz(raw(body, &mut p, 5, 4)?); if v > 0 { p += v as usize; }
        sum += ts + od;
    }
    if pos != buf.len() { return Err(()); }
    Ok(sum)
}
fn main() {
    let size: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(100);
    let count = 800;
    let mut buf = Vec::new();
    for i in 0..count {
        let mut body = vec![0u8];
        put_varlong(&mut body, (i / 100) as i64); put_varlong(&mut body, i as i64); put_varlong(&mut body, -1);
        put_varlong(&mut body, size as i64); body.extend(std::iter::repeat(7u8).take(size)); put_varlong(&mut body, 0);
        put_varlong(&mut buf, body.len() as i64); buf.extend_from_slice(&body);
    }
    let f_loop: fn(&[u8], &mut usize, u32, u32) -> Result<u64, ()> = raw_loop;
    let f_fast: fn(&[u8], &mut usize, u32, u32) -> Result<u64, ()> = |b, p, m, l| raw_fast(b, p, m, l);
    for round in 0..3 {
        for (name, f) in [("loop", f_loop), ("inline", f_fast)] {
            let n = 20_000; let t = Instant::now();
            for _ in 0..n { black_box(walk(black_box(&buf), count, f).unwrap()); }
            let ns = t.elapsed().as_nanos() as f64 / (n * count) as f64;
            println!("round {round} {size} B records, {name}: {ns:.2} ns per record");
        }
    }
}
