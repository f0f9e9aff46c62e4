//! Helpers on the standard library alone, so that `xtask` (which stays quick to build, with
//! no service clients) shares these very lines: it includes this file by path.

/// A port nothing listens on right now (the kernel's choice for port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process killed (and reaped) when dropped: a server a test started.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
