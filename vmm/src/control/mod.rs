//! The control socket of a running VM: a UNIX stream socket speaking JSON lines (see [`protocol`]),
//! served by a thread on top of the public [`VmHandle`] API. `ironvirt-vmm --control-socket PATH`
//! starts it; the management layer connects with [`Client`].

pub mod json;
pub mod protocol;
mod server;
mod threads;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub use json::Value;
pub use protocol::{ControlError, Request, VcpuInfo};
pub use server::{ControlServer, ServerInfo};

/// A connection to a VM's control socket.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// Why a control request could not be made (the VM's own refusals are [`ControlError`]s).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the control socket {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("control socket I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the VM closed the control connection")]
    Closed,
    #[error(transparent)]
    Refused(#[from] ControlError),
}

impl Client {
    /// Connects, with `timeout` for each later read and write (a wedged VMM must not hang the CLI).
    pub fn connect(path: &Path, timeout: Duration) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    pub fn call(&mut self, request: &Request) -> Result<Value, ClientError> {
        let mut line = request.encode();
        line.push('\n');
        self.writer.write_all(line.as_bytes())?;
        let mut reply = String::new();
        if self.reader.read_line(&mut reply)? == 0 {
            return Err(ClientError::Closed);
        }
        Ok(protocol::decode_reply(reply.trim_end())?)
    }
}
