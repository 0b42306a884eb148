//! Real servers for tests: a `redis-server` of its own on a free port, and
//! (with the `postgres` feature) a fresh database on a PostgreSQL server.
//!
//! When `redis-server` is not installed, [`RedisServer::start`] returns None and
//! the test says it was skipped, unless `TESTKIT_REQUIRE_REDIS` is set (CI sets
//! it, after installing Debian's redis-server), in which case it panics.
//!
//! `postgres()` creates a database of its own for each call on the server
//! named by `TESTKIT_POSTGRES_URL` (an administrator's URL: a role that may
//! create databases). Unset, the test says it was skipped, unless
//! `TESTKIT_REQUIRE_POSTGRES` is set (CI sets both, see `.ci/postgres`).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresDatabase, postgres};

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    pub fn start() -> Option<Self> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
        if !installed {
            if std::env::var_os("TESTKIT_REQUIRE_REDIS").is_some() {
                panic!("redis-server is required (TESTKIT_REQUIRE_REDIS) but not installed");
            }
            eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .ok()?;
        let mut server = Self { child: None, port };
        server.restart();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server at once (SIGKILL); its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &std::env::temp_dir().display().to_string(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting redis-server: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.answers_ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    /// A database of a test's own on the test server; dropped (with the
    /// connections still open to it) when this value drops.
    pub struct PostgresDatabase {
        url: String,
        admin_url: String,
        name: String,
    }

    impl PostgresDatabase {
        /// The database's URL: the admin URL's credentials and host, with
        /// this database's name.
        pub fn url(&self) -> &str {
            &self.url
        }
    }

    /// A fresh, empty database on the server `TESTKIT_POSTGRES_URL` names;
    /// None (the test says it was skipped) when the variable is unset.
    ///
    /// # Panics
    /// When `TESTKIT_REQUIRE_POSTGRES` is set and the variable is not, or the
    /// server cannot create the database.
    pub async fn postgres() -> Option<PostgresDatabase> {
        let Ok(admin_url) = std::env::var("TESTKIT_POSTGRES_URL") else {
            if std::env::var_os("TESTKIT_REQUIRE_POSTGRES").is_some() {
                panic!("TESTKIT_POSTGRES_URL is required (TESTKIT_REQUIRE_POSTGRES) but not set");
            }
            eprintln!(
                "skipped: TESTKIT_POSTGRES_URL is not set (.ci/postgres starts a server and prints one)"
            );
            return None;
        };
        let name = format!("t_{:016x}", rand::random::<u64>());
        admin(&admin_url, &format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("creating the test database {name}: {e}"));
        let url = with_dbname(&admin_url, &name);
        Some(PostgresDatabase {
            url,
            admin_url,
            name,
        })
    }

    impl Drop for PostgresDatabase {
        fn drop(&mut self) {
            let admin_url = self.admin_url.clone();
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            // A runtime of its own on a thread of its own: a drop cannot
            // await, and it may run inside the test's runtime.
            let dropped = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?
                    .block_on(admin(&admin_url, &sql))
            })
            .join();
            if let Ok(Err(e)) = dropped {
                eprintln!("dropping the test database {}: {e}", self.name);
            }
        }
    }

    async fn admin(admin_url: &str, sql: &str) -> Result<(), String> {
        let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connecting to TESTKIT_POSTGRES_URL: {e:?}"))?;
        let connection = tokio::spawn(connection);
        let done = client
            .batch_execute(sql)
            .await
            .map_err(|e| format!("{e:?}"));
        drop(client);
        let _ = connection.await;
        done
    }

    /// `url` with its database name replaced by `name`: the path of a
    /// `postgres://` URL, or a `dbname=` appended to the `key=value` form
    /// (where the last one wins).
    pub(super) fn with_dbname(url: &str, name: &str) -> String {
        let Some(scheme_end) = url.find("://") else {
            return format!("{url} dbname={name}");
        };
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let query = tail.find('?').map(|at| &tail[at..]).unwrap_or("");
        format!("{}{authority}/{name}{query}", &url[..scheme_end + 3])
    }

    #[cfg(test)]
    mod tests {
        use super::with_dbname;

        #[test]
        fn a_test_database_url_keeps_the_admin_url_but_its_name() {
            for (admin, expected) in [
                (
                    "postgres://u:p@h:5432/postgres",
                    "postgres://u:p@h:5432/t_1",
                ),
                ("postgres://u:p@h:5432", "postgres://u:p@h:5432/t_1"),
                (
                    "postgresql://u@h/postgres?sslmode=disable",
                    "postgresql://u@h/t_1?sslmode=disable",
                ),
                (
                    "postgres://u@h?host=/run/postgresql",
                    "postgres://u@h/t_1?host=/run/postgresql",
                ),
                (
                    "host=h user=u dbname=postgres",
                    "host=h user=u dbname=postgres dbname=t_1",
                ),
            ] {
                assert_eq!(with_dbname(admin, "t_1"), expected);
            }
        }
    }
}
