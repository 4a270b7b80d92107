//! Creates on a Directus server the collections of a deltasync schema file that it lacks.
//!
//! ```text
//! cargo run --release -p cli --example directus_seed -- FILE.yaml [--url URL]
//! ```
//!
//! The file is loaded as `deltasync` loads it (environment references included). `--url`
//! replaces the file's `remote.url`, and a `DELTASYNC_SEED_TOKEN` environment variable replaces
//! its credentials with that static token (`scripts/directus seed` sets both for the server it
//! runs). Each collection gets its primary key, its cursor, its fields and, for
//! `deletes: archive`, its archive field; collections that exist are left as they are, except
//! that one with `key_type: auto_increment` gets the idempotency field it lacks.

use std::process::ExitCode;

use cli::remote_setup::{self, Outcome};
use deltasync::{Auth, Config, DirectusClient, Secret};

const USAGE: &str = "usage: directus_seed FILE.yaml [--url URL]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("seed: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let mut file = None;
    let mut url = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = Some(args.next().ok_or(USAGE)?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ if file.is_none() && !arg.starts_with('-') => file = Some(arg),
            _ => return Err(format!("unexpected argument {arg}\n{USAGE}")),
        }
    }
    let file = file.ok_or(USAGE)?;
    let mut config = Config::load(&file).map_err(|e| e.to_string())?;
    if let Some(url) = url {
        config.remote.url = url.trim_end_matches('/').to_owned();
    }
    if let Ok(token) = std::env::var("DELTASYNC_SEED_TOKEN") {
        config.remote.auth = Auth::Token(Secret::new(token));
    }
    let client = DirectusClient::new(&config.remote).map_err(|e| e.to_string())?;
    let done = remote_setup::ensure_collections(&client, &config.collections)
        .await
        .map_err(|e| format!("{} on {}: {e}", file, config.remote.url))?;
    for (name, outcome) in done {
        let c = config.collection(&name).ok_or("collection vanished")?;
        match outcome {
            Outcome::Created => println!(
                "created {name}: key {} ({}), cursor {}, {} field(s){}",
                c.primary_key,
                c.key_type,
                c.cursor,
                c.fields.len(),
                match &c.deletes {
                    deltasync::Deletes::Archive { field, .. } => format!(", archive field {field}"),
                    _ => String::new(),
                }
            ),
            Outcome::Existed => println!("exists  {name}: left as it is"),
            Outcome::AddedIdempotencyField => println!(
                "exists  {name}: added its idempotency field {}",
                c.idempotency_field.as_deref().unwrap_or_default()
            ),
        }
    }
    Ok(())
}
