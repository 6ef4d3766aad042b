//! `murmur`: the Murmuration gateway node binary. See the crate docs of
//! `murmur_gateway` for the map.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use murmur_gateway::config::{ServeArgs, DEV_JWT_SECRET};

/// Murmuration: a clustered, multi-protocol real-time message broker.
#[derive(Parser)]
#[command(name = "murmur", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: public port (client protocols), internal port (metrics, health, API).
    Serve(Box<ServeArgs>),
    /// Print a client JWT signed with the configured HS256 secret.
    Token {
        /// The user / caller / client id (`sub`).
        #[arg(long)]
        user: String,
        /// Lifetime, e.g. `1h`, `30m`.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// The HS256 secret (defaults to the development secret with MURMUR_DEV=1).
        #[arg(long, env = "MURMUR_JWT_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// `1`: use the development secret when no secret is set.
        #[arg(long, env = "MURMUR_DEV")]
        dev: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => match args.resolve() {
            Ok(settings) => murmur_gateway::server::run(settings),
            Err(e) => {
                eprintln!("murmur: {e}");
                ExitCode::from(2)
            }
        },
        Command::Token {
            user,
            ttl,
            secret,
            dev,
        } => {
            let ttl: Duration = match murmur_shared::duration::parse(&ttl) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    eprintln!("murmur: --ttl must be positive");
                    return ExitCode::from(2);
                }
                Err(e) => {
                    eprintln!("murmur: --ttl: {e}");
                    return ExitCode::from(2);
                }
            };
            let dev = matches!(dev.as_deref(), Some("1" | "true" | "yes" | "on"));
            let secret = match secret.filter(|s| !s.is_empty()) {
                Some(s) => s,
                None if dev => DEV_JWT_SECRET.to_string(),
                None => {
                    eprintln!("murmur: set MURMUR_JWT_SECRET (or MURMUR_DEV=1)");
                    return ExitCode::from(2);
                }
            };
            if user.is_empty() {
                eprintln!("murmur: --user must not be empty");
                return ExitCode::from(2);
            }
            println!(
                "{}",
                murmur_broker::auth::mint_client_token(secret.as_bytes(), &user, ttl)
            );
            ExitCode::SUCCESS
        }
    }
}
