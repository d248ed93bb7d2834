//! cargo run --release -p floe-edge --example pingora_floor -- 127.0.0.1:8190 body.json [THREADS WORK_STEALING MODE]
//!
//! The framework's floor, for the load harness: a Pingora proxy whose
//! `request_filter` answers every request with the bytes of one file, through
//! the same server settings as the edge (THREADS worker threads, default 2;
//! WORK_STEALING true or false, default true; a 16 KiB write buffer per
//! connection) and the same head as a cache hit. Nothing
//! else: no authentication, no cache lookup, no metrics. The edge's hit path
//! measured against it shows what Floe's own code costs on top of Pingora.
//!
//! MODE `proxy` (the default) runs the floor through pingora-proxy, the
//! framework the edge is built on; MODE `server` answers from a bare
//! `HttpServerApp` of pingora-core, without the proxy's session and phases,
//! to show what the proxy layer itself costs.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::server::configuration::ServerConf;

struct Floor {
    head: ResponseHeader,
    body: Bytes,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        session
            .write_response_header(Box::new(self.head.clone()), false)
            .await?;
        session
            .write_response_body(Some(self.body.clone()), true)
            .await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Error::e_explain(ErrorType::InternalError, "the floor never forwards")
    }
}

/// The same answer from pingora-core's HTTP server loop, no proxy layer.
struct Bare {
    head: ResponseHeader,
    body: Bytes,
}

#[async_trait]
impl HttpServerApp for Bare {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !session.read_request().await.ok()? {
            return None;
        }
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        session.write_response_header_ref(&self.head).await.ok()?;
        session
            .write_response_body(self.body.clone(), true)
            .await
            .ok()?;
        let settings = HttpPersistentSettings::for_session(&session);
        let stream = session.finish().await.ok()??;
        Some(ReusedHttpStream::from_reusable_stream(stream, settings))
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(file)) = (args.next(), args.next()) else {
        anyhow::bail!(
            "usage: pingora_floor LISTEN_ADDR BODY_FILE [THREADS WORK_STEALING proxy|server]"
        );
    };
    let threads = args.next().map_or(Ok(2), |t| t.parse())?;
    let work_stealing = args.next().map_or(Ok(true), |w| w.parse())?;
    let mode = args.next().unwrap_or_else(|| "proxy".to_string());
    let body = Bytes::from(std::fs::read(&file)?);
    let mut head = ResponseHeader::build(200, Some(4))?;
    head.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    head.insert_header(http::header::ETAG, "\"floor\"")?;
    head.insert_header("x-floe-cache", "hit")?;
    head.set_content_length(body.len())?;

    let conf = ServerConf {
        threads,
        work_stealing,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let listener = ListenerConfig::tcp(listen).l4_buffer(L4BufferSettings::default().write(16384));
    match mode.as_str() {
        "proxy" => {
            let mut service = pingora::proxy::http_proxy_service_with_name(
                &server.configuration,
                Floor { head, body },
                "floor",
            );
            service.add_listener(listener);
            server.add_service(service);
        }
        "server" => {
            let mut service = pingora::services::listening::Service::new(
                "floor".to_string(),
                Bare { head, body },
            );
            service.add_listener(listener);
            server.add_service(service);
        }
        other => anyhow::bail!("MODE must be proxy or server, got {other:?}"),
    }
    server.run_forever()
}
