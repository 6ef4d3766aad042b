//! The chat inbox (`request-inbox`) of a user in many sessions. Setup: user U owns
//! `--sessions` groups, each shared with one other user who sends one message into it
//! (so every item has a preview and an unread count). Then `--connections` devices of
//! U each ask for the first inbox page (`--page` sessions) at the step's rate (0 =
//! closed loop: the next request as soon as the page is complete). Primary events:
//! complete pages (every `inbox-item`, then the `status-response`); latency is from the
//! due time to the page's last frame.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{run_steps, setup_all, step_each, Ctx, SentStats};
use crate::cli::InboxArgs;
use crate::clients::chat;
use crate::clients::ws::{self, Ws};
use crate::metrics::{Kind, Local, Recorder};
use crate::report::RunResult;
use crate::token;

use super::StepCmd as Cmd;

const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads frames until the `status-response` of `cdid`; returns the items counted.
async fn read_page(ws: &mut Ws, cdid: &str) -> Result<usize, String> {
    let mut items = 0;
    loop {
        let next = tokio::time::timeout(PAGE_TIMEOUT, ws.next())
            .await
            .map_err(|_| "inbox page timed out".to_string())?;
        let text = match next {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("inbox socket: {e}")),
            None => return Err("inbox socket closed".into()),
        };
        for a in chat::actions(&text) {
            if a["cdid"] != cdid {
                continue;
            }
            match a["type"].as_str() {
                Some("inbox-item") => items += 1,
                Some("status-response") if a["status"] == "succeeded" => return Ok(items),
                _ => return Err(format!("inbox failed: {a}")),
            }
        }
    }
}

fn spawn_lister(mut ws: Ws, page: usize, rec: Arc<Recorder>, name: String) -> mpsc::Sender<Cmd> {
    let (tx, mut rx) = mpsc::channel::<Cmd>(4);
    tokio::spawn(async move {
        let mut local = Local::new(&rec);
        let mut seq: u64 = 0;
        while let Some((mut tt, done)) = rx.recv().await {
            let mut stats = SentStats::default();
            while let Some(due) = tt.next_send(&rec, &mut local, &mut stats).await {
                seq += 1;
                let cdid = format!("i{seq}");
                let req = json!({"cdid": cdid, "type": "request-inbox", "limit": page});
                if let Err(e) = ws::send_text(&mut ws, req.to_string()).await {
                    rec.disconnect(format!("{name}: {e}"));
                    return;
                }
                match read_page(&mut ws, &cdid).await {
                    Ok(n) if n == page => local.sample(Kind::Primary, due),
                    Ok(n) => rec.error(format!("{name}: a page of {n} items, not {page}")),
                    Err(e) => {
                        rec.disconnect(format!("{name}: {e}"));
                        return;
                    }
                }
            }
            local.flush();
            let _ = done.send(stats);
        }
    });
    tx
}

pub async fn run(ctx: &Ctx, args: &InboxArgs) -> Result<RunResult, String> {
    let n = args.sessions.max(1);
    let page = args.page.clamp(1, 100).min(n);
    let mut run = ctx.result(
        "inbox",
        "murmuration",
        "inbox pages",
        json!({"url": args.url, "sessions": n, "page": page, "connections": args.connections,
               "rates_pages_per_s": ctx.common.rates}),
    );
    let secret = &ctx.common.jwt_secret;
    let owner = format!("inbox-{}", ctx.run_id);
    let other = format!("inbox-peer-{}", ctx.run_id);
    let t0 = std::time::Instant::now();
    let mut o = chat::login(
        &args.url,
        &owner,
        "setup",
        &token::mint(secret, &owner),
        &ctx.sources,
    )
    .await?;
    let mut p = chat::login(
        &args.url,
        &other,
        "setup",
        &token::mint(secret, &other),
        &ctx.sources,
    )
    .await?;
    let users = vec![owner.clone(), other.clone()];
    for i in 0..n {
        let sid = chat::create_group(&mut o, &users).await?;
        let body = Value::from(format!("message {i} of the inbox benchmark")).to_string();
        let send = chat::send_message(&sid, &body, 0);
        let send = send.replacen('{', r#"{"cdid":"s","#, 1);
        ws::send_text(&mut p, send).await?;
        ws::wait_for(&mut p, PAGE_TIMEOUT, "the setup message", |text| {
            chat::actions(text)
                .into_iter()
                .find(|a| a["cdid"] == "s")
                .map(|a| {
                    if a["type"] == "message-broadcast" {
                        Ok(())
                    } else {
                        Err(format!("send failed: {a}"))
                    }
                })
        })
        .await?;
    }
    drop((o, p));
    run.setup.insert("sessions_created".into(), json!(n));
    run.setup.insert(
        "setup_s".into(),
        json!(super::round1(t0.elapsed().as_secs_f64())),
    );
    let c = args.connections.max(1);
    let devices = setup_all(ctx, c, "inbox devices", |i| {
        let url = args.url.clone();
        let owner = owner.clone();
        let tok = token::mint(secret, &owner);
        let sources = ctx.sources.clone();
        async move { chat::login(&url, &owner, &format!("d{i}"), &tok, &sources).await }
    })
    .await?;
    let listers: Vec<mpsc::Sender<Cmd>> = devices
        .into_iter()
        .enumerate()
        .map(|(i, w)| spawn_lister(w, page, ctx.rec.clone(), format!("lister {i}")))
        .collect();
    let listers = &listers;
    run_steps(ctx, 1.0, None, &mut run, |w| step_each(listers, w)).await;
    Ok(run)
}
