//! Database URLs and failed connections in words: the password kept out of
//! messages, and the one direct PostgreSQL attempt made before the pool opens.

use std::time::Duration;

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "(unparsable URL)".to_string(),
    }
}

/// Connects once to the PostgreSQL server of `url`, within `timeout`, and
/// reports a failure with the server's host and port, the user and database,
/// and the cause in words (never the password).
pub async fn probe_postgres(url: &str, timeout: Duration) -> anyhow::Result<()> {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| {
        anyhow::anyhow!(
            "database.url {} is not a valid PostgreSQL URL: {e}",
            redact_url(url)
        )
    })?;
    let place = format!(
        "PostgreSQL at {}:{} (user {}, database {})",
        options.get_host(),
        options.get_port(),
        options.get_username(),
        options.get_database().unwrap_or(options.get_username())
    );
    let cause = match tokio::time::timeout(timeout, options.connect()).await {
        Ok(Ok(conn)) => {
            let _ = sqlx::Connection::close(conn).await;
            return Ok(());
        }
        Ok(Err(e)) => connect_cause(&e),
        Err(_) => format!(
            "no answer within {} ms (database.acquire_timeout_ms): a firewall dropping packets, \
             or a server too busy to accept",
            timeout.as_millis()
        ),
    };
    anyhow::bail!("cannot connect to {place}: {cause}")
}

/// The cause of a failed connection attempt, in words.
fn connect_cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (nothing listens on that port: is PostgreSQL running, on that port?)"
                    .to_string()
            }
            std::io::ErrorKind::TimedOut => format!("connection timed out ({io})"),
            _ if io.to_string().contains("lookup address")
                || io.to_string().contains("Name or service not known")
                || io.to_string().contains("nodename nor servname") =>
            {
                format!("the host name does not resolve (DNS failure: {io})")
            }
            _ => format!("network error: {io}"),
        },
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01" | "28000") => {
                format!("authentication failed ({})", db.message())
            }
            Some("3D000") => format!(
                "the database does not exist ({}); create it, or fix the URL's path",
                db.message()
            ),
            Some("53300") => format!("the server has no connection slots left ({})", db.message()),
            Some(code) => format!("the server refused the connection: {} (SQLSTATE {code})", db.message()),
            None => format!("the server refused the connection: {}", db.message()),
        },
        sqlx::Error::Tls(t) => format!("TLS failed: {t}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
