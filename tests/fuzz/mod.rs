//! A small seeded mutation fuzzer for the broker's pure parts, on stable Rust.
//!
//! `cargo fuzz` needs a nightly toolchain, which this project's machines cannot fetch, so the
//! fuzz targets are ordinary tests (`tests/fuzz_*.rs`): each runs its committed corpus
//! (`tests/fuzz/corpus/<target>/`, real frames and batches), then inputs mutated from it by a
//! seeded generator (bit flips, interesting integers over length and count fields, cuts,
//! splices, inserts). No coverage guidance; what it finds is what a careless or hostile client
//! sends: truncated frames, lying sizes and counts, garbage bodies.
//!
//! Bounds: `STRATA_FUZZ_ITERATIONS` inputs per target (default [`ITERATIONS_DEFAULT`], a few
//! seconds), or `STRATA_FUZZ_SECONDS` of wall time when set (`.ci/run` gives each target a
//! bounded run); `STRATA_FUZZ_SEED` replays one run. An input that panics the target is saved
//! as `corpus/<target>/crash-<hash>` (commit it: it becomes a regression input) and the test
//! fails naming the seed and the file.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Inputs per target when no bound is set in the environment.
pub const ITERATIONS_DEFAULT: u64 = 3_000;

/// Largest input the mutator produces (keeps a run's memory small).
const INPUT_BYTES_MAX: usize = 1 << 20;

/// splitmix64: tiny, seedable, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Integers that break length, count and offset fields.
const INTERESTING_I32: [i32; 12] =
    [0, 1, -1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, i32::MAX, i32::MIN, 100 << 20];

/// The committed corpus of `target`: every file under `tests/fuzz/corpus/<target>/`.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus").join(target)
}

/// Writes `input` into the corpus of `target` under `name` (seeding a corpus from code).
pub fn save(target: &str, name: &str, input: &[u8]) -> PathBuf {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).expect("creating the corpus directory");
    let path = dir.join(name);
    std::fs::write(&path, input).expect("writing a corpus file");
    path
}

/// One mutation of `input`, sometimes spliced with another corpus entry.
pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        match rng.below(9) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = [0u8, 0xff, 0x7f, 0x80, 1][rng.below(5)];
            }
            2 if out.len() >= 4 => {
                let i = rng.below(out.len() - 3);
                let v = INTERESTING_I32[rng.below(INTERESTING_I32.len())];
                out[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            3 if out.len() >= 2 => {
                let i = rng.below(out.len() - 1);
                let v = INTERESTING_I32[rng.below(INTERESTING_I32.len())] as i16;
                out[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            4 => out.truncate(rng.below(out.len() + 1)),
            5 => {
                let at = rng.below(out.len() + 1);
                let len = 1 + rng.below(64);
                let extra = rng.bytes(len);
                out.splice(at..at, extra);
            }
            6 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(64)).min(out.len());
                out.drain(start..end);
            }
            7 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(out.len() + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ => {
                // A varint-looking run: continuation bits that never end, or a huge value.
                let at = rng.below(out.len() + 1);
                let run = if rng.below(2) == 0 { vec![0xff; 10] } else { vec![0x80, 0x80, 0x01] };
                out.splice(at..at, run);
            }
        }
    }
    out.truncate(INPUT_BYTES_MAX);
    out
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Runs `target` over its corpus, then over mutated inputs until the bound (see the module
/// docs). `check` must not panic on any input: it is the property under test (decode and
/// reject cleanly, or accept and round-trip, as the target says).
pub fn run(target: &str, check: impl Fn(&[u8])) {
    let corpus = corpus(target);
    let seed = env_u64("STRATA_FUZZ_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let deadline = env_u64("STRATA_FUZZ_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
    let iterations = env_u64("STRATA_FUZZ_ITERATIONS").unwrap_or(ITERATIONS_DEFAULT);
    let mut rng = Rng::new(seed);
    let attempt = |input: &[u8], what: &str| {
        if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
            let name = format!("crash-{:016x}", fnv1a(input));
            let path = save(target, &name, input);
            panic!("fuzz target {target} panicked on {what} (seed {seed}); saved as {path:?}");
        }
    };
    for (i, input) in corpus.iter().enumerate() {
        attempt(input, &format!("corpus entry {i}"));
    }
    let empty = vec![Vec::new()];
    let bases = if corpus.is_empty() { &empty } else { &corpus };
    let mut done: u64 = 0;
    loop {
        let more = match deadline {
            Some(deadline) => Instant::now() < deadline,
            None => done < iterations,
        };
        if !more {
            break;
        }
        let base = &bases[rng.below(bases.len())];
        let input = mutate(&mut rng, base, &corpus);
        attempt(&input, &format!("mutated input {done}"));
        done += 1;
    }
    eprintln!("fuzz {target}: {} corpus entries, {done} mutated inputs, seed {seed}", corpus.len());
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}
