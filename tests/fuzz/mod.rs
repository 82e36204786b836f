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
//!
//! Besides mutated corpus entries, one input in [`FRESH_ONE_IN`] is fresh random bytes, which
//! is what drives targets that decode their input as a sequence of operations (state
//! machines). [`peak_heap`] measures the heap a closure uses on this thread (every fuzz
//! binary counts allocations, through [`Counting`]), for targets whose property bounds
//! memory.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Inputs per target when no bound is set in the environment.
pub const ITERATIONS_DEFAULT: u64 = 3_000;

/// Largest input the mutator produces (keeps a run's memory small).
const INPUT_BYTES_MAX: usize = 1 << 20;

/// One input in this many is fresh random bytes instead of a mutated corpus entry.
const FRESH_ONE_IN: usize = 8;

/// Longest fresh random input.
const FRESH_BYTES_MAX: usize = 4096;

/// The system allocator, counting the bytes each thread has live and its peak.
pub struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn count_alloc(size: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(size);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn count_free(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

// SAFETY: every call goes to the system allocator unchanged; the counting only touches
// const-initialised thread locals without destructors (no allocation, no re-entry).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_free(layout.size());
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc(new_size);
        count_free(layout.size());
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most heap it had allocated at once on this
/// thread (bytes above what was live before; realloc counts old and new at its peak).
pub fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, peak.saturating_sub(base))
}

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
    let mut done: u64 = 0;
    loop {
        let more = match deadline {
            Some(deadline) => Instant::now() < deadline,
            None => done < iterations,
        };
        if !more {
            break;
        }
        let input = if corpus.is_empty() || rng.below(FRESH_ONE_IN) == 0 {
            let len = rng.below(FRESH_BYTES_MAX + 1);
            rng.bytes(len)
        } else {
            let base = rng.below(corpus.len());
            mutate(&mut rng, &corpus[base], &corpus)
        };
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

/// Reads choices out of a fuzz input, for targets that decode it as a sequence of operations
/// (state machines). Once the input is used up every read answers `None`, which ends the
/// sequence.
pub struct Choices<'a> {
    bytes: &'a [u8],
}

impl<'a> Choices<'a> {
    pub fn new(bytes: &'a [u8]) -> Choices<'a> {
        Choices { bytes }
    }

    pub fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(*first)
    }

    /// A number in `0..n` (`n` at most 256).
    pub fn below(&mut self, n: usize) -> Option<usize> {
        Some(usize::from(self.byte()?) % n.max(1))
    }

    pub fn flag(&mut self) -> Option<bool> {
        Some(self.byte()? & 1 == 1)
    }

    pub fn pick<'b, T>(&mut self, from: &'b [T]) -> Option<&'b T> {
        from.get(self.below(from.len())?)
    }

    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }

    /// Up to `n` bytes (fewer when the input ends).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        head
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.bytes.len())
    }
}

/// Recomputes the CRC-32C of every whole RecordBatch v2 in `data` (after a mutation broke
/// it), so that decoders get past the checksum to the records; also clears the compression
/// bits (decompression is the batch validator's target, and garbage claiming a large
/// uncompressed size would make this run allocate it).
pub fn fix_batch_crcs(data: &mut [u8]) {
    const ATTRIBUTES_AT: usize = 21;
    const CRC_AT: usize = 17;
    let mut at = 0;
    while let Some(len) = data.get(at + 8..at + 12) {
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        let Ok(len) = usize::try_from(len) else { return };
        let end = at + 12 + len;
        if len < ATTRIBUTES_AT - 12 + 2 || end > data.len() {
            return;
        }
        data[at + ATTRIBUTES_AT + 1] &= !0x07;
        let crc = crc32c::crc32c(&data[at + ATTRIBUTES_AT..end]);
        data[at + CRC_AT..at + ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        at = end;
    }
}
