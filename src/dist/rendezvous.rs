//! The launcher-side rendezvous that hands a small blob (the NCCL unique id, 128 bytes)
//! from rank 0 to every other rank over TCP — the bootstrap that torchrun users already
//! configure with `MASTER_ADDR` / `MASTER_PORT`, not a collective transport.
//!
//! Port: `UCGM_RENDEZVOUS_PORT` when set, else `MASTER_PORT + 1` (under torchrun the
//! agent's own store already listens on `MASTER_PORT`). Protocol: rank r connects, sends
//! `b"UCGM"`, its rank and the world size (u32 little-endian each); rank 0 checks them
//! and answers with the blob's length (u32) and bytes. Rank 0 serves until every other
//! rank was served once; both sides give up with a clear error after the timeout.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::communicator::dist_error;
use crate::error::Result;

/// Environment variable overriding the rendezvous port.
pub const PORT_ENV: &str = "UCGM_RENDEZVOUS_PORT";

const MAGIC: &[u8; 4] = b"UCGM";
/// The largest blob served (NCCL's id is 128 bytes).
const MAX_BLOB: usize = 1 << 16;

/// The rendezvous port for `MASTER_PORT = master_port`.
pub fn rendezvous_port(master_port: u16) -> Result<u16> {
    match std::env::var(PORT_ENV) {
        Ok(v) => v
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| dist_error(format!("{PORT_ENV}={v:?} is not a port number"))),
        Err(_) => master_port
            .checked_add(1)
            .ok_or_else(|| dist_error(format!("MASTER_PORT {master_port} leaves no port for the rendezvous; set {PORT_ENV}"))),
    }
}

/// Rank 0: listens on `port` (all interfaces) and sends `blob` to each of the other
/// `world − 1` ranks once.
pub fn serve(port: u16, world: usize, blob: &[u8], timeout: Duration) -> Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port)).map_err(|e| dist_error(format!("rendezvous: cannot listen on port {port}: {e}")))?;
    serve_on(listener, world, blob, timeout)
}

/// [`serve`] on a bound listener.
pub fn serve_on(listener: TcpListener, world: usize, blob: &[u8], timeout: Duration) -> Result<()> {
    if blob.len() > MAX_BLOB {
        return Err(dist_error(format!("rendezvous: blob of {} bytes is too large", blob.len())));
    }
    let deadline = Instant::now() + timeout;
    listener.set_nonblocking(true).map_err(|e| dist_error(format!("rendezvous: {e}")))?;
    let mut served = vec![false; world];
    served[0] = true;
    while served.iter().any(|s| !s) {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut hello = [0u8; 12];
                if stream.read_exact(&mut hello).is_err() || &hello[..4] != MAGIC {
                    continue; // a stray connection: ignore it
                }
                let rank = u32::from_le_bytes(hello[4..8].try_into().expect("4 bytes")) as usize;
                let their_world = u32::from_le_bytes(hello[8..12].try_into().expect("4 bytes")) as usize;
                if their_world != world || rank == 0 || rank >= world {
                    return Err(dist_error(format!(
                        "rendezvous: {peer} says it is rank {rank} of {their_world}, this group has {world} ranks"
                    )));
                }
                let mut reply = (blob.len() as u32).to_le_bytes().to_vec();
                reply.extend_from_slice(blob);
                stream
                    .write_all(&reply)
                    .map_err(|e| dist_error(format!("rendezvous: sending to rank {rank}: {e}")))?;
                served[rank] = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    let missing: Vec<usize> = (0..world).filter(|&r| !served[r]).collect();
                    return Err(dist_error(format!(
                        "rendezvous: ranks {missing:?} did not connect within {:.1} s",
                        timeout.as_secs_f64()
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(dist_error(format!("rendezvous: accept: {e}"))),
        }
    }
    Ok(())
}

/// Rank `rank` > 0: connects to `addr:port` (retrying until the timeout, since rank 0 may
/// start later) and returns rank 0's blob.
pub fn fetch(addr: &str, port: u16, rank: usize, world: usize, timeout: Duration) -> Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut last_error = String::from("no address");
    loop {
        let addrs: Vec<_> = (addr, port).to_socket_addrs().map(|a| a.collect()).unwrap_or_default();
        for a in &addrs {
            match TcpStream::connect_timeout(a, Duration::from_secs(2)) {
                Ok(mut stream) => return exchange(&mut stream, rank, world),
                Err(e) => last_error = e.to_string(),
            }
        }
        if Instant::now() >= deadline {
            return Err(dist_error(format!(
                "rendezvous: rank {rank} could not reach rank 0 at {addr}:{port} within {:.1} s ({last_error})",
                timeout.as_secs_f64()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn exchange(stream: &mut TcpStream, rank: usize, world: usize) -> Result<Vec<u8>> {
    let io = |e: std::io::Error| dist_error(format!("rendezvous: rank {rank}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(io)?;
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&(rank as u32).to_le_bytes());
    hello.extend_from_slice(&(world as u32).to_le_bytes());
    stream.write_all(&hello).map_err(io)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).map_err(io)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_BLOB {
        return Err(dist_error(format!("rendezvous: rank 0 announced {len} bytes")));
    }
    let mut blob = vec![0u8; len];
    stream.read_exact(&mut blob).map_err(io)?;
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank0_hands_its_blob_to_every_rank() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let blob: Vec<u8> = (0..128).map(|i| i as u8).collect();
        let b = blob.clone();
        let server = std::thread::spawn(move || serve_on(listener, 3, &b, Duration::from_secs(20)));
        let clients: Vec<_> = (1..3)
            .map(|r| std::thread::spawn(move || fetch("127.0.0.1", port, r, 3, Duration::from_secs(20))))
            .collect();
        for c in clients {
            assert_eq!(c.join().unwrap().unwrap(), blob);
        }
        server.join().unwrap().unwrap();
    }

    #[test]
    fn missing_ranks_time_out_with_a_clear_error() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let e = serve_on(listener, 2, b"id", Duration::from_millis(300)).unwrap_err().to_string();
        assert!(e.contains("ranks [1] did not connect"), "{e}");
        // Nobody listens on a just-released port.
        let port = TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port();
        let e = fetch("127.0.0.1", port, 1, 2, Duration::from_millis(300)).unwrap_err().to_string();
        assert!(e.contains("could not reach rank 0"), "{e}");
    }
}
