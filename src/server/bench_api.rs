//! Entry points for the criterion benches (`benches/fetch.rs`) into private parts of the
//! server. Not an API: hidden from the docs, and nothing in the broker calls it.

use futures::io::Cursor;

use super::frame_reader::FrameReader;

/// Reads every frame of `stream` (size-prefixed frames back to back, as a client pipelines
/// them) with a connection's [`FrameReader`]; returns the body bytes read.
pub fn read_frames(stream: &[u8]) -> usize {
    futures::executor::block_on(async {
        let mut frames = FrameReader::new(Cursor::new(stream));
        let mut total = 0;
        while frames.wait_for_data().await.is_ok() {
            let size = frames.read_size().await.expect("a whole size prefix");
            let size = usize::try_from(size).expect("a non-negative size");
            total += frames.read_body(size).await.expect("a whole frame").len();
        }
        total
    })
}
