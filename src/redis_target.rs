//! Where Redis is (`REDIS_HOST`, `REDIS_PORT`, `REDIS_DB`, `REDIS_PASSWORD`) and how to open a
//! connection to it with timeouts. Shared by the publisher, the cluster store, ANPR's dedupe and
//! the API's health check; holds no connection itself.

use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use std::time::{Duration, Instant};

/// Where Redis is. `Debug` leaves the password out.
#[derive(Clone)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub password: Option<String>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "redis://{}{}:{}/{}", if self.password.is_some() { "***@" } else { "" }, self.host, self.port, self.db)
    }
}

impl RedisTarget {
    pub fn from_config(c: &crate::config::Config) -> Self {
        RedisTarget { host: c.redis_host.clone(), port: c.redis_port, db: c.redis_db, password: c.redis_password.clone() }
    }

    fn client(&self) -> redis::RedisResult<redis::Client> {
        let mut redis_info = RedisConnectionInfo::default().set_db(self.db);
        if let Some(p) = &self.password {
            redis_info = redis_info.set_password(p);
        }
        let info = ConnectionAddr::Tcp(self.host.clone(), self.port).into_connection_info()?.set_redis_settings(redis_info);
        redis::Client::open(info)
    }

    /// Opens a connection with `timeout` for connecting and for every read and write.
    pub fn connect(&self, timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let conn = self.client()?.get_connection_with_timeout(timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(timeout))?;
        Ok(conn)
    }

    /// One PING on a fresh connection: the health check's view of Redis.
    pub fn ping(&self, timeout: Duration) -> Result<Duration, String> {
        let t0 = Instant::now();
        let mut conn = self.connect(timeout).map_err(|e| e.to_string())?;
        redis::cmd("PING").query::<String>(&mut conn).map_err(|e| e.to_string())?;
        Ok(t0.elapsed())
    }
}
