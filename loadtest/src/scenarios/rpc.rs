//! Helios RPC: providers offer namespace `bench` (on `--provider-url`), callers call
//! `bench:echo` at the step's rate (on `--caller-url`); each call goes caller → broker
//! → provider → broker → caller, across nodes when the URLs differ (a local provider
//! is preferred by the broker). Primary events: successful responses; latency is the
//! round trip from the call's due time.

use serde_json::json;

use super::fanout::{clip, due_of_request_id};
use super::receiver::{self, RecvProto};
use super::sender::{step_all, SendProto, Sender};
use super::{or_default, run_steps, setup_all, Ctx};
use crate::cli::RpcArgs;
use crate::clients::helios;
use crate::metrics::{Kind, Local};
use crate::payload::{self, Scanner};
use crate::report::RunResult;
use crate::token;

/// Answers every `bench:*` request with `{"__lt": <the request's>}`.
struct Provider {
    scan: Scanner,
}

impl RecvProto for Provider {
    fn on_text(&mut self, text: &str, local: &mut Local) -> Option<String> {
        if !text.contains(r#""type":"request""#) {
            return None;
        }
        let Some(id) = helios::request_id_of(text) else {
            local
                .recorder()
                .error(format!("request without id: {}", clip(text)));
            return None;
        };
        let t = self.scan.first(text.as_bytes()).unwrap_or_default();
        Some(helios::response(id, &format!(r#"{{"__lt":{t}}}"#)))
    }
}

struct Caller {
    id: u64,
    pad: usize,
}

impl SendProto for Caller {
    fn message(&mut self, due_us: u64, seq: u64) -> String {
        helios::request(
            &helios::request_id(self.id, due_us),
            "bench:echo",
            &payload::json(due_us, seq, self.pad),
        )
    }

    fn on_text(&mut self, text: &str, local: &mut Local) -> Option<String> {
        if !text.contains(r#""type":"response""#) {
            return None;
        }
        if helios::is_failure(text) {
            local
                .recorder()
                .error(format!("call failed: {}", clip(text)));
        } else if let Some(due) = due_of_request_id(text) {
            local.sample(Kind::Primary, due);
        }
        None
    }
}

pub async fn run(ctx: &Ctx, args: &RpcArgs) -> Result<RunResult, String> {
    let caller_urls = or_default(&args.caller_urls, &args.urls).to_vec();
    let provider_urls = or_default(&args.provider_urls, &args.urls).to_vec();
    let secret = ctx.common.jwt_secret.clone();
    let mut run = ctx.result(
        "rpc",
        "murmuration",
        "responses",
        json!({"providers": args.providers, "callers": args.callers,
               "caller_urls": caller_urls, "provider_urls": provider_urls,
               "rates_calls_per_s": ctx.common.rates}),
    );
    let providers = setup_all(ctx, args.providers, "providers", |i| {
        let url = provider_urls[i % provider_urls.len()].clone();
        let tok = token::mint(&secret, &format!("prov-{}-{i}", ctx.run_id));
        let sources = ctx.sources.clone();
        async move {
            let mut w = helios::connect(&url, &tok, &sources).await?;
            helios::provide(&mut w, &helios::request_id(i as u64, 2), "bench").await?;
            Ok(w)
        }
    })
    .await?;
    for (i, w) in providers.into_iter().enumerate() {
        receiver::spawn(
            w,
            Provider {
                scan: Scanner::default(),
            },
            &ctx.rec,
            format!("provider {i}"),
        );
    }
    let callers = setup_all(ctx, args.callers, "callers", |i| {
        let url = caller_urls[i % caller_urls.len()].clone();
        let tok = token::mint(&secret, &format!("call-{}-{i}", ctx.run_id));
        let sources = ctx.sources.clone();
        async move { helios::connect(&url, &tok, &sources).await }
    })
    .await?;
    let senders: Vec<Sender> = callers
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let proto = Caller {
                id: 5_000 + i as u64,
                pad: ctx.common.payload_bytes,
            };
            Sender::spawn(w, proto, &ctx.rec, format!("caller {i}"))
        })
        .collect();
    run.setup
        .insert("connections".into(), json!(args.providers + args.callers));
    run_steps(ctx, 1.0, None, &mut run, |w| step_all(&senders, w)).await;
    Ok(run)
}
