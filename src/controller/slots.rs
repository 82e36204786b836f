//! A small record kept in a file that is overwritten in place, so that updating it needs no
//! new disk space (a full disk cannot stop it) and a torn write loses nothing.
//!
//! The file holds two [`SLOT_BYTES`] slots. Each slot: magic `SLT1` (4 bytes), sequence
//! (u64 BE), payload length (u16 BE), payload, then a CRC-32C of everything before it in the
//! slot. An update writes the slot that does not hold the newest record, with the next
//! sequence, and is made durable by the caller (fdatasync): a torn write damages only that
//! slot, whose CRC then fails, and the other still holds the previous record. Reading takes
//! the valid slot with the highest sequence. The file is created once, whole, by a temp file
//! and a rename ([`initial`]); later updates rewrite one slot at its offset ([`Slots::next`]).
//! Pure: the callers do the I/O (shard 0 with glommio, the controller thread with std).

/// Bytes of one slot (a sector: written atomically by most devices, and torn writes are
/// caught by the CRC anyway).
pub const SLOT_BYTES: usize = 512;
/// Bytes of a slot file.
pub const FILE_BYTES: usize = 2 * SLOT_BYTES;
/// Largest payload a slot holds.
pub const PAYLOAD_BYTES_MAX: usize = SLOT_BYTES - HEADER_BYTES - CRC_BYTES;

const MAGIC: &[u8; 4] = b"SLT1";
const HEADER_BYTES: usize = 4 + 8 + 2;
const CRC_BYTES: usize = 4;

/// The newest record of a slot file and where the next one goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slots {
    /// Sequence of the newest valid record (0 if none).
    pub sequence: u64,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Index of the slot holding it.
    slot: usize,
}

fn encode_slot(sequence: u64, payload: &[u8]) -> Option<[u8; SLOT_BYTES]> {
    if payload.len() > PAYLOAD_BYTES_MAX {
        return None;
    }
    let mut slot = [0u8; SLOT_BYTES];
    slot[..4].copy_from_slice(MAGIC);
    slot[4..12].copy_from_slice(&sequence.to_be_bytes());
    slot[12..14].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    let end = HEADER_BYTES + payload.len();
    slot[HEADER_BYTES..end].copy_from_slice(payload);
    let crc = crc32c::crc32c(&slot[..end]);
    slot[end..end + CRC_BYTES].copy_from_slice(&crc.to_be_bytes());
    Some(slot)
}

fn decode_slot(slot: &[u8]) -> Option<(u64, Vec<u8>)> {
    if slot.get(..4)? != MAGIC {
        return None;
    }
    let sequence = u64::from_be_bytes(slot.get(4..12)?.try_into().ok()?);
    let len = usize::from(u16::from_be_bytes(slot.get(12..14)?.try_into().ok()?));
    let end = HEADER_BYTES.checked_add(len)?;
    let crc = u32::from_be_bytes(slot.get(end..end + CRC_BYTES)?.try_into().ok()?);
    if crc != crc32c::crc32c(slot.get(..end)?) {
        return None;
    }
    Some((sequence, slot.get(HEADER_BYTES..end)?.to_vec()))
}

/// Whether `bytes` look like a slot file (either slot starts with the magic): anything else
/// is an older format for the caller to read its own way.
pub fn is_slot_file(bytes: &[u8]) -> bool {
    bytes.get(..4) == Some(MAGIC) || bytes.get(SLOT_BYTES..SLOT_BYTES + 4) == Some(MAGIC)
}

/// The newest valid record of a slot file's contents, if any.
pub fn read(bytes: &[u8]) -> Option<Slots> {
    let mut best: Option<Slots> = None;
    for slot in 0..2 {
        let Some(chunk) = bytes.get(slot * SLOT_BYTES..(slot + 1) * SLOT_BYTES) else { continue };
        if let Some((sequence, payload)) = decode_slot(chunk) {
            if best.as_ref().is_none_or(|b| sequence > b.sequence) {
                best = Some(Slots { sequence, payload, slot });
            }
        }
    }
    best
}

/// The whole contents of a new slot file holding `payload` (in both slots); `None` if the
/// payload is too large.
pub fn initial(payload: &[u8]) -> Option<Vec<u8>> {
    let first = encode_slot(1, payload)?;
    let second = encode_slot(0, payload)?;
    Some([first, second].concat())
}

impl Slots {
    /// The update replacing this record with `payload`: (file offset, slot bytes to write
    /// there), and the state after it is durable. `None` if the payload is too large.
    pub fn next(&self, payload: &[u8]) -> Option<(u64, [u8; SLOT_BYTES], Slots)> {
        let sequence = self.sequence + 1;
        let slot = 1 - self.slot;
        let bytes = encode_slot(sequence, payload)?;
        let after = Slots { sequence, payload: payload.to_vec(), slot };
        Some(((slot * SLOT_BYTES) as u64, bytes, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(file: &mut [u8], offset: u64, bytes: &[u8]) {
        let at = offset as usize;
        file[at..at + bytes.len()].copy_from_slice(bytes);
    }

    #[test]
    fn updates_alternate_slots_and_a_torn_write_keeps_the_previous_record() {
        let mut file = initial(b"one").unwrap();
        assert_eq!(file.len(), FILE_BYTES);
        assert!(is_slot_file(&file));
        let state = read(&file).unwrap();
        assert_eq!(state.payload, b"one");
        let (offset, bytes, after) = state.next(b"two").unwrap();
        apply(&mut file, offset, &bytes);
        assert_eq!(read(&file).unwrap(), after);
        let (offset, bytes, _) = after.next(b"three").unwrap();
        // Torn: only the first half of the slot reached the disk.
        apply(&mut file, offset, &bytes[..SLOT_BYTES / 2]);
        let mut damaged = file.clone();
        damaged[offset as usize + 20] ^= 0xff;
        assert_eq!(read(&damaged).unwrap().payload, b"two");
        apply(&mut file, offset, &bytes);
        assert_eq!(read(&file).unwrap().payload, b"three");
        assert!(read(&[0u8; FILE_BYTES]).is_none());
        assert!(!is_slot_file(b"12000\n"));
        assert!(initial(&[0u8; PAYLOAD_BYTES_MAX + 1]).is_none());
    }
}
