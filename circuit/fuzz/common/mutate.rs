//! Input-driven mutation of real cells, shared by the stateful fuzz
//! targets (included with `#[path]`, so `cargo fuzz list` does not see it).

use libfuzzer_sys::arbitrary::{Result, Unstructured};

/// XORs input bytes into `cell` at an input-chosen offset, maybe truncating.
pub fn mutate(u: &mut Unstructured, cell: &mut Vec<u8>) -> Result<()> {
    if cell.is_empty() {
        return Ok(());
    }
    let at = usize::from(u.arbitrary::<u16>()?) % cell.len();
    let len = usize::from(u.arbitrary::<u8>()? % 16);
    for (i, mask) in u.bytes(len.min(u.len()))?.iter().enumerate() {
        let j = (at + i) % cell.len();
        cell[j] ^= mask;
    }
    if u.arbitrary::<u8>()? == 0xff {
        cell.truncate(at);
    }
    Ok(())
}
