//! Workload vocabulary (compression, acks, key mode, sizes, rates, durations) and the workload
//! file (YAML or TOML) whose fields mirror the command-line flags.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// Compression codec of produced batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip (flate2).
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// Codec bits of the RecordBatch attributes.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Inverse of [`Compression::attribute_bits`].
    pub fn from_attribute_bits(bits: i16) -> Option<Self> {
        Some(match bits {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => return Err(format!("unknown compression {s:?} (none|gzip|snappy|lz4|zstd)")),
        })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        };
        f.write_str(name)
    }
}

/// Produce acknowledgement mode (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Fire and forget: the broker sends no response.
    None,
    /// The leader has appended the batch.
    Leader,
    /// All in-sync replicas have it.
    All,
}

impl Acks {
    /// Wire value of the `acks` field.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "0" => Acks::None,
            "1" => Acks::Leader,
            "all" | "-1" => Acks::All,
            _ => return Err(format!("unknown acks {s:?} (0|1|all)")),
        })
    }
}

impl fmt::Display for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        })
    }
}

/// How record keys are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    /// Null keys: the sticky partitioner picks partitions.
    None,
    /// Random keys (decimal digits of a random u64): murmur2 spreads them.
    Random,
    /// Keys 0, 1, 2, … per producer: murmur2 spreads them.
    Sequential,
}

impl FromStr for KeyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "none" => KeyMode::None,
            "random" => KeyMode::Random,
            "sequential" => KeyMode::Sequential,
            _ => return Err(format!("unknown key mode {s:?} (none|random|sequential)")),
        })
    }
}

impl fmt::Display for KeyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyMode::None => "none",
            KeyMode::Random => "random",
            KeyMode::Sequential => "sequential",
        })
    }
}

/// Target send rate over all producers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// As fast as the broker acknowledges (bounded by in-flight and buffer limits).
    Max,
    /// Messages per second, paced on a fixed schedule.
    PerSecond(f64),
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "max" {
            return Ok(Rate::Max);
        }
        let n = parse_scaled(s)?;
        if n <= 0.0 {
            return Err(format!("rate must be positive: {s:?}"));
        }
        Ok(Rate::PerSecond(n))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => f.write_str("max"),
            Rate::PerSecond(n) => write!(f, "{n}"),
        }
    }
}

/// Parses `1500`, `1.5k`, `2M`, `1G` (decimal multipliers).
fn parse_scaled(s: &str) -> Result<f64, String> {
    let s = s.trim().replace('_', "");
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1e3),
        Some('m' | 'M') => (&s[..s.len() - 1], 1e6),
        Some('g' | 'G') => (&s[..s.len() - 1], 1e9),
        _ => (s.as_str(), 1.0),
    };
    num.parse::<f64>().map(|n| n * mult).map_err(|_| format!("bad number {s:?}"))
}

/// Parses a byte size: `100`, `16KiB`, `1MiB`, `16k` (k/m = KiB/MiB).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (num, mult) = [("kib", 1024), ("mib", 1 << 20), ("gib", 1 << 30), ("kb", 1000)]
        .iter()
        .chain(&[("mb", 1_000_000), ("k", 1024), ("m", 1 << 20), ("b", 1)])
        .find_map(|(suffix, mult)| lower.strip_suffix(suffix).map(|n| (n.to_string(), *mult)))
        .unwrap_or((lower.clone(), 1));
    let n: usize = num.trim().parse().map_err(|_| format!("bad byte size {s:?}"))?;
    n.checked_mul(mult).ok_or_else(|| format!("byte size overflows: {s:?}"))
}

/// Record value sizes.
#[derive(Debug, Clone, PartialEq)]
pub enum SizeDist {
    /// Every record has this many bytes.
    Fixed(usize),
    /// Uniform between the bounds (inclusive): `100..1000`.
    Uniform(usize, usize),
    /// Weighted choice: `100:80,1KiB:20`.
    Weighted(Vec<(usize, u32)>),
}

impl SizeDist {
    /// Largest size this distribution yields.
    pub fn max(&self) -> usize {
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform(_, hi) => *hi,
            SizeDist::Weighted(w) => w.iter().map(|(s, _)| *s).max().unwrap_or(0),
        }
    }

    /// Smallest size this distribution yields.
    pub fn min(&self) -> usize {
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform(lo, _) => *lo,
            SizeDist::Weighted(w) => w.iter().map(|(s, _)| *s).min().unwrap_or(0),
        }
    }

    /// Mean size.
    pub fn mean(&self) -> f64 {
        match self {
            SizeDist::Fixed(n) => *n as f64,
            SizeDist::Uniform(lo, hi) => (*lo + *hi) as f64 / 2.0,
            SizeDist::Weighted(w) => {
                let total: f64 = w.iter().map(|(_, wt)| f64::from(*wt)).sum();
                w.iter().map(|(s, wt)| *s as f64 * f64::from(*wt)).sum::<f64>() / total
            }
        }
    }

    /// Picks a size from a uniform random `u64`.
    #[inline]
    pub fn sample(&self, random: u64) -> usize {
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform(lo, hi) => lo + (random % (hi - lo + 1) as u64) as usize,
            SizeDist::Weighted(w) => {
                let total: u64 = w.iter().map(|(_, wt)| u64::from(*wt)).sum();
                let mut pick = random % total.max(1);
                for (size, weight) in w {
                    if pick < u64::from(*weight) {
                        return *size;
                    }
                    pick -= u64::from(*weight);
                }
                self.max()
            }
        }
    }
}

impl FromStr for SizeDist {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((lo, hi)) = s.split_once("..") {
            let (lo, hi) = (parse_bytes(lo)?, parse_bytes(hi)?);
            if lo > hi {
                return Err(format!("empty size range {s:?}"));
            }
            return Ok(SizeDist::Uniform(lo, hi));
        }
        if s.contains(':') {
            let mut choices = Vec::new();
            for part in s.split(',') {
                let (size, weight) = part.split_once(':').ok_or(format!("bad size {part:?}"))?;
                let weight = weight.trim().parse().map_err(|_| format!("bad weight {part:?}"))?;
                choices.push((parse_bytes(size)?, weight));
            }
            if choices.iter().all(|(_, w)| *w == 0) {
                return Err(format!("all weights are zero in {s:?}"));
            }
            return Ok(SizeDist::Weighted(choices));
        }
        parse_bytes(s).map(SizeDist::Fixed)
    }
}

impl fmt::Display for SizeDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeDist::Fixed(n) => write!(f, "{n}"),
            SizeDist::Uniform(lo, hi) => write!(f, "{lo}..{hi}"),
            SizeDist::Weighted(w) => {
                let parts: Vec<String> = w.iter().map(|(s, wt)| format!("{s}:{wt}")).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

/// A duration flag: `10s`, `500ms`, `250us`, `2m`, `1h`, or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
        let secs = match unit.trim() {
            "" | "s" => n,
            "ms" => n / 1e3,
            "us" | "µs" => n / 1e6,
            "ns" => n / 1e9,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(format!("bad duration unit in {s:?} (ns|us|ms|s|m|h)")),
        };
        Ok(Dur(Duration::from_secs_f64(secs)))
    }
}

/// A string or a number in a workload file, handed to the flag's own parser.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Float(f64),
    Str(String),
}

impl Scalar {
    fn into_string(self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(n) => n.to_string(),
            Scalar::Str(s) => s,
        }
    }
}

/// Makes a `FromStr` type deserializable from a string or a number.
macro_rules! deserialize_from_str {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = Scalar::deserialize(d)?.into_string();
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_from_str!(Compression, Acks, KeyMode, Rate, SizeDist, Dur, ByteSize);

/// A byte-size flag (`16KiB`, `1MiB`, `100`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_bytes(s).map(ByteSize)
    }
}

/// A workload file: every field is optional and named like its flag (kebab-case); flags given on
/// the command line override the file. See `perf/workloads/` for examples.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WorkloadFile {
    /// Scenario name (used in reports).
    pub name: Option<String>,
    /// Free text describing the scenario.
    pub description: Option<String>,
    /// Bootstrap brokers, comma separated.
    pub brokers: Option<String>,
    /// Topic name.
    pub topic: Option<String>,
    /// Partitions when the topic is created.
    pub partitions: Option<i32>,
    /// Replication factor when the topic is created.
    pub replication_factor: Option<i16>,
    /// Producer connections.
    pub producers: Option<usize>,
    /// Consumer connections.
    pub consumers: Option<usize>,
    /// Record value size or distribution.
    pub record_size: Option<SizeDist>,
    /// Key mode.
    pub key_mode: Option<KeyMode>,
    /// Maximum uncompressed bytes per batch.
    pub batch_bytes: Option<ByteSize>,
    /// How long a batch may wait for more records.
    pub linger: Option<Dur>,
    /// Compression codec.
    pub compression: Option<Compression>,
    /// Produce acks.
    pub acks: Option<Acks>,
    /// Target rate (msgs/s) or `max`.
    pub rate: Option<Rate>,
    /// Measured run length.
    pub duration: Option<Dur>,
    /// Measured messages to send.
    pub messages: Option<u64>,
    /// Unmeasured warm-up before the measured run.
    pub warmup: Option<Dur>,
    /// glommio executors (one pinned thread each).
    pub cores: Option<usize>,
    /// Produce requests in flight per connection.
    pub max_in_flight: Option<usize>,
    /// Busy-poll time before an idle executor sleeps.
    pub spin: Option<Dur>,
}

impl WorkloadFile {
    /// Reads a workload from a `.yaml`/`.yml` or `.toml` file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading workload {}: {e}", path.display()))?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let parsed = match ext {
            "toml" => toml::from_str(&text).map_err(anyhow::Error::from),
            "yaml" | "yml" => serde_yaml::from_str(&text).map_err(anyhow::Error::from),
            _ => anyhow::bail!("workload {} must end in .yaml, .yml or .toml", path.display()),
        };
        parsed.map_err(|e| anyhow::anyhow!("workload {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags() {
        assert_eq!("16KiB".parse::<ByteSize>(), Ok(ByteSize(16384)));
        assert_eq!("1m".parse::<ByteSize>(), Ok(ByteSize(1 << 20)));
        assert_eq!("2M".parse::<Rate>(), Ok(Rate::PerSecond(2e6)));
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("5ms".parse::<Dur>(), Ok(Dur(Duration::from_millis(5))));
        assert_eq!("60".parse::<Dur>(), Ok(Dur(Duration::from_secs(60))));
        assert_eq!("100..200".parse::<SizeDist>(), Ok(SizeDist::Uniform(100, 200)));
        let w: SizeDist = "100:3,1KiB:1".parse().unwrap_or(SizeDist::Fixed(0));
        assert_eq!(w, SizeDist::Weighted(vec![(100, 3), (1024, 1)]));
        assert_eq!(w.mean(), (300.0 + 1024.0) / 4.0);
        assert!("all".parse::<Acks>().is_ok_and(|a| a.wire() == -1));
    }

    #[test]
    fn yaml_and_toml_agree() {
        let yaml = "name: x\npartitions: 16\nrecord-size: 100\nrate: max\nlinger: 1ms\n";
        let toml = "name = 'x'\npartitions = 16\nrecord-size = 100\nrate = 'max'\nlinger = '1ms'\n";
        let a: WorkloadFile = serde_yaml::from_str(yaml).expect("yaml");
        let b: WorkloadFile = toml::from_str(toml).expect("toml");
        assert_eq!(a.partitions, b.partitions);
        assert_eq!(a.record_size, Some(SizeDist::Fixed(100)));
        assert_eq!(b.rate, Some(Rate::Max));
        assert_eq!(a.linger, b.linger);
    }

    #[test]
    fn shipped_workloads_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("perf/workloads");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).expect("perf/workloads exists") {
            let path = entry.expect("dir entry").path();
            let w = WorkloadFile::load(&path).expect("workload parses");
            assert!(w.name.is_some(), "{} has no name", path.display());
            count += 1;
        }
        assert!(count >= 4);
    }
}
