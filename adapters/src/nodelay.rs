//! Turns Nagle's algorithm off on the store's PostgreSQL connections, as libpq always does.
//!
//! sqlx 0.9.0 leaves it on (sqlx issue 4335: fixed upstream, not in a release yet). With it
//! on, a statement that leaves the socket in more than one piece waits for the server's
//! delayed acknowledgement before its last piece goes: 40 ms on Linux, whatever the
//! statement's size beyond that. The driver does not hand out its socket, so a new
//! connection asks the server which ports it sees, and this process's sockets with those
//! ports get `TCP_NODELAY`. A connection through a proxy or a Unix socket is left as it is.
//! This module owns only that; it goes once the driver sets the option itself.

use sea_orm::sqlx::{self, postgres::PgConnection};

/// Sets `TCP_NODELAY` on the socket of `conn`, when this process holds it.
pub(crate) async fn turn_off_nagle(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    // A server that cannot say (one that only speaks PostgreSQL's protocol) keeps the
    // connection as it is: the option saves time, the connection works without it.
    let (local, peer) = match ports(conn).await {
        Ok(Some(ports)) => ports,
        Ok(None) => return Ok(()),
        Err(e) => {
            tracing::debug!(error = %e, "the database does not say which ports it sees");
            return Ok(());
        }
    };
    let set = sockets_with_ports(local, peer).and_then(|sockets| {
        sockets
            .iter()
            .try_for_each(|s| s.set_tcp_nodelay(true))
            .map(|()| sockets.len())
    });
    match set {
        Ok(0) => tracing::debug!(
            local,
            peer,
            "no socket of this process has the ports the database sees"
        ),
        Ok(_) => {}
        Err(e) => tracing::debug!(local, peer, error = %e, "could not set TCP_NODELAY"),
    }
    Ok(())
}

/// The client and server ports of `conn` as the server sees them; `None` over a Unix socket.
async fn ports(conn: &mut PgConnection) -> Result<Option<(u16, u16)>, sqlx::Error> {
    let (client, server): (Option<i32>, Option<i32>) =
        sqlx::query_as("SELECT inet_client_port(), inet_server_port()")
            .fetch_one(conn)
            .await?;
    let port = |p: Option<i32>| p.and_then(|p| u16::try_from(p).ok());
    Ok(port(client).zip(port(server)))
}

/// This process's TCP sockets from local port `local` to port `peer`, each a duplicate of the
/// descriptor: one that another thread closes meanwhile is never touched.
#[cfg(unix)]
fn sockets_with_ports(local: u16, peer: u16) -> std::io::Result<Vec<socket2::Socket>> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let port = |a: std::io::Result<socket2::SockAddr>| a.ok()?.as_socket().map(|a| a.port());
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/dev/fd")? {
        let Some(fd) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // SAFETY: `fcntl` takes a plain number; one that is not open only makes it fail.
        let duplicate = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if duplicate < 0 {
            continue;
        }
        // SAFETY: `duplicate` was opened just now, and nothing else owns it.
        let socket = socket2::Socket::from(unsafe { OwnedFd::from_raw_fd(duplicate) });
        if port(socket.local_addr()) == Some(local) && port(socket.peer_addr()) == Some(peer) {
            out.push(socket);
        }
    }
    Ok(out)
}

#[cfg(not(unix))]
fn sockets_with_ports(_local: u16, _peer: u16) -> std::io::Result<Vec<socket2::Socket>> {
    Ok(Vec::new())
}

#[cfg(all(test, unix))]
mod tests {
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn only_the_socket_with_both_ports_is_found() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert!(!client.nodelay().unwrap());
        let (local, peer) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        let sockets = super::sockets_with_ports(local.port(), peer.port()).unwrap();
        // The other end has the same two ports the other way round, and is not among them.
        assert_eq!(sockets.len(), 1);
        sockets[0].set_tcp_nodelay(true).unwrap();
        assert!(client.nodelay().unwrap());
        assert!(!server.nodelay().unwrap());
    }

    #[tokio::test]
    async fn the_stores_postgresql_connections_have_nodelay() {
        let Some(url) = std::env::var("DELTASYNC_TEST_PG")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            return;
        };
        let store = crate::store::SqlStore::connect(&url).await.unwrap();
        let mut conn = store
            .connection()
            .get_postgres_connection_pool()
            .acquire()
            .await
            .unwrap();
        let (local, peer) = super::ports(&mut conn)
            .await
            .unwrap()
            .expect("a TCP connection");
        let sockets = super::sockets_with_ports(local, peer).unwrap();
        assert_eq!(sockets.len(), 1);
        assert!(sockets[0].tcp_nodelay().unwrap());
    }
}
