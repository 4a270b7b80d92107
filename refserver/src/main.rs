//! `refserver [--port N] [--token T]`: runs the reference server until Ctrl-C.
//!
//! Owns: argument parsing and printing the URL. Must not: add behaviour of its own.

use std::net::SocketAddr;

const USAGE: &str = "usage: refserver [--port N] [--token T]";

fn parse_args(args: &[String]) -> Result<refserver::Options, String> {
    let mut opts = refserver::Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--port" => {
                let port = value()?
                    .parse::<u16>()
                    .map_err(|e| format!("--port: {e}"))?;
                opts.addr = SocketAddr::from(([127, 0, 0, 1], port));
            }
            "--token" => opts.admin_token = value()?,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(opts)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    let server = match refserver::start(opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("refserver: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{}", server.url());
    println!("admin token: {}", server.admin_token());
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_port_and_token() {
        let args: Vec<String> = ["--port", "8055", "--token", "t"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let opts = parse_args(&args).unwrap();
        assert_eq!(opts.addr.port(), 8055);
        assert_eq!(opts.admin_token, "t");
        assert!(parse_args(&["--port".to_string()]).is_err());
    }
}
