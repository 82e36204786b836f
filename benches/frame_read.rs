//! The connection's frame read (issue 20 step 1): request bodies read into pooled, reused
//! buffers (`pooled`) against the growing path through the scratch buffer that every body took
//! before (`growing`, still used for frames the budget admits no pooled buffer for). The
//! stream is an in-memory cursor, so the figure is the broker's own cost per frame: the
//! copy out of the "socket" and whatever the reader adds.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::executor::block_on;
use futures::io::Cursor;
use strata::server::frame_reader::{body_bytes, FrameReader};

/// Frames per iteration.
const FRAMES: usize = 16;

fn stream(body_bytes: usize) -> Vec<u8> {
    let body = vec![0x5au8; body_bytes];
    let mut out = Vec::with_capacity(FRAMES * (body_bytes + 4));
    for _ in 0..FRAMES {
        out.extend_from_slice(&(body_bytes as i32).to_be_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// Reads every frame of `bytes`; `pooled` admits the size class (else only the frame size,
/// which takes the growing path).
fn read_frames(bytes: &[u8], pooled: bool) -> usize {
    let mut reader = FrameReader::new(Cursor::new(bytes));
    block_on(async {
        let mut total = 0;
        for _ in 0..FRAMES {
            reader.wait_for_data().await.unwrap();
            let size = reader.read_size().await.unwrap() as usize;
            let room = if pooled { body_bytes(size) } else { size };
            let body: Bytes = reader.read_body(size, room).await.unwrap();
            total += body.len();
        }
        total
    })
}

fn frame_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_read");
    for size in [16 << 10, 256 << 10, 1 << 20] {
        let bytes = stream(size);
        group.throughput(Throughput::Bytes((FRAMES * size) as u64));
        for (name, pooled) in [("pooled", true), ("growing", false)] {
            group.bench_with_input(BenchmarkId::new(name, size), &bytes, |b, bytes| {
                b.iter(|| read_frames(bytes, pooled));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, frame_read);
criterion_main!(benches);
