//! `strata consume`: print a topic's records, like `rpk topic consume`, `kcat -C` and
//! `kafka-console-consumer.sh`, without a consumer group.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::json;
use strata::client::records::{describe, ConsumeOptions, Consumer, InRecord, Router, StartAt};

/// Flags of `strata consume`.
#[derive(Args, Debug)]
#[command(after_help = "FORMAT (like kcat -f): %t topic, %p partition, %o offset, %k key, \
%v value, %T timestamp (ms), %K key length, %S value length, %% a percent sign; \\n, \\t and \
\\\\ are a newline, a tab and a backslash. The default text output is --format '%v\\n'; \
e.g. --format '%k\\t%v\\n' prints keys too. Keys and values are printed as their bytes; \
in --output json they are strings (invalid UTF-8 replaced by U+FFFD) or null.\n\n\
Example: strata consume events --offset earliest --num 10 --output json")]
pub struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Broker to bootstrap from (leaders are found with Metadata).
    #[arg(long, env = "STRATA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
    #[command(flatten)]
    security: super::SecurityArgs,
    /// Partitions to read (repeatable or comma-separated) [default: all].
    #[arg(long, short = 'p', value_delimiter = ',')]
    partition: Vec<i32>,
    /// Where to start: earliest, latest, or an offset (clamped into each log).
    #[arg(long, short = 'o', default_value = "earliest", value_parser = parse_offset)]
    offset: StartAt,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    num: Option<u64>,
    /// Output: text (see --format) or one JSON object per record (topic, partition, offset,
    /// timestamp, key, value).
    #[arg(long, value_enum, default_value_t = ConsumeOutput::Text)]
    output: ConsumeOutput,
    /// Text output format (see below) [default: '%v\n'].
    #[arg(long, short = 'f', conflicts_with = "output")]
    format: Option<String>,
    /// Stop when no record arrived for this long (ms) [default: run until --num or Ctrl-C].
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Transaction isolation.
    #[arg(long, value_enum, default_value_t = Isolation::ReadUncommitted)]
    isolation: Isolation,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ConsumeOutput {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Isolation {
    /// Every record, including those of open and aborted transactions.
    #[value(alias = "read_uncommitted")]
    ReadUncommitted,
    /// Only committed records, up to the last stable offset.
    #[value(alias = "read_committed")]
    ReadCommitted,
}

fn parse_offset(s: &str) -> Result<StartAt, String> {
    match s {
        "earliest" | "beginning" | "oldest" => Ok(StartAt::Earliest),
        "latest" | "end" | "newest" => Ok(StartAt::Latest),
        n => match n.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(StartAt::Offset(n)),
            _ => Err("expected earliest, latest or an offset (0 or more)".into()),
        },
    }
}

/// Runs `strata consume`.
pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let router = Router::connect_secure(
        &args.bootstrap_server,
        "strata-consume",
        &args.topic,
        &args.security.connector()?,
    )
    .map_err(|e| anyhow::anyhow!(describe(&e)))?;
    let isolation_level = match args.isolation {
        Isolation::ReadUncommitted => 0,
        Isolation::ReadCommitted => 1,
    };
    let max_wait_ms = match args.timeout_ms {
        Some(t) => t.clamp(1, 500) as i32,
        None => 500,
    };
    let options = ConsumeOptions {
        start: args.offset,
        isolation_level,
        max_wait_ms,
        partition_max_bytes: 1 << 20,
    };
    let mut consumer = Consumer::new(router, &args.partition, options)
        .map_err(|e| anyhow::anyhow!(describe(&e)))?;
    let format = match (&args.format, args.output) {
        (_, ConsumeOutput::Json) => None,
        (Some(f), _) => Some(unescape(f)),
        (None, _) => Some(b"%v\n".to_vec()),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    loop {
        if args.num.is_some_and(|n| printed >= n) {
            break;
        }
        let records = consumer.poll().map_err(|e| anyhow::anyhow!(describe(&e)))?;
        if !records.is_empty() {
            last_record = Instant::now();
        }
        for r in &records {
            if args.num.is_some_and(|n| printed >= n) {
                break;
            }
            let written = match &format {
                Some(f) => write_text(&mut out, f, &args.topic, r),
                None => write_json(&mut out, &args.topic, r),
            };
            match written {
                Ok(()) => printed += 1,
                // stdout closed (e.g. piped into `head`): done.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(e).context("writing to stdout"),
            }
        }
        match out.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("writing to stdout"),
        }
        let idle = Duration::from_millis(args.timeout_ms.unwrap_or(u64::MAX));
        if args.timeout_ms.is_some() && last_record.elapsed() >= idle {
            break;
        }
    }
    Ok(())
}

/// `\n`, `\t`, `\\` in a --format argument as the bytes they name.
fn unescape(format: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        let c = match c {
            '\\' => match chars.next() {
                Some('n') => '\n',
                Some('t') => '\t',
                Some('r') => '\r',
                Some('0') => '\0',
                Some('\\') | None => '\\',
                Some(other) => {
                    out.push(b'\\');
                    other
                }
            },
            c => c,
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    out
}

fn write_text(
    out: &mut impl Write,
    format: &[u8],
    topic: &str,
    r: &InRecord,
) -> std::io::Result<()> {
    let mut bytes = format.iter();
    while let Some(b) = bytes.next() {
        if *b != b'%' {
            out.write_all(&[*b])?;
            continue;
        }
        match bytes.next() {
            Some(b't') => out.write_all(topic.as_bytes())?,
            Some(b'p') => write!(out, "{}", r.partition)?,
            Some(b'o') => write!(out, "{}", r.offset)?,
            Some(b'T') => write!(out, "{}", r.timestamp)?,
            Some(b'k') => out.write_all(r.key.as_deref().unwrap_or_default())?,
            Some(b'v') => out.write_all(r.value.as_deref().unwrap_or_default())?,
            Some(b'K') => write!(out, "{}", r.key.as_ref().map_or(-1, |k| k.len() as i64))?,
            Some(b'S') => write!(out, "{}", r.value.as_ref().map_or(-1, |v| v.len() as i64))?,
            Some(b'%') | None => out.write_all(b"%")?,
            Some(other) => out.write_all(&[b'%', *other])?,
        }
    }
    Ok(())
}

fn write_json(out: &mut impl Write, topic: &str, r: &InRecord) -> std::io::Result<()> {
    let text =
        |b: &Option<bytes::Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    let line = json!({
        "topic": topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": text(&r.key),
        "value": text(&r.value),
    });
    writeln!(out, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_kcat() {
        let r = InRecord {
            partition: 2,
            offset: 7,
            timestamp: 9,
            key: Some(bytes::Bytes::from("k")),
            value: Some(bytes::Bytes::from("v")),
        };
        let mut out = Vec::new();
        write_text(&mut out, &unescape("%t/%p@%o %T %k\\t%v %K%S 100%%\\n"), "t", &r).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "t/2@7 9 k\tv 11 100%\n");
    }
}
