//! The PE image checksum (`IMAGE_OPTIONAL_HEADER.CheckSum`).
//!
//! The PE format says the loader validates it for drivers, and Microsoft's linker sets it only
//! with `/RELEASE`, which lld-link 14 does not implement; `cargo xtask sys` therefore writes it
//! after linking. The algorithm: add the image as little-endian 16-bit words (a trailing odd byte
//! as a word of its own), with the checksum field counted as zero, folding carries back into the
//! low 16 bits after every addition; then add the image length.

/// Offset of `CheckSum` from the start of the optional header (the same in PE32 and PE32+).
const CHECKSUM_IN_OPTIONAL_HEADER: usize = 64;

/// File offset of the checksum field of an image whose `PE\0\0` signature is at `pe_pointer`.
pub fn field_offset(pe_pointer: u32) -> usize {
    // Signature (4 bytes), then the COFF file header (20 bytes), then the optional header.
    usize::try_from(pe_pointer).unwrap_or(usize::MAX).saturating_add(4 + 20 + CHECKSUM_IN_OPTIONAL_HEADER)
}

/// The checksum of `image`, whose checksum field starts at `field` (an even offset).
pub fn compute(image: &[u8], field: usize) -> Result<u32, String> {
    if !field.is_multiple_of(2) || field.checked_add(4).is_none_or(|end| end > image.len()) {
        return Err(format!("checksum field at {field:#x} is not inside the image or not even"));
    }
    let length = u32::try_from(image.len()).map_err(|_| "image larger than 4 GiB".to_owned())?;
    let mut sum: u32 = 0;
    for (index, chunk) in image.chunks(2).enumerate() {
        let offset = index * 2;
        let word = if offset == field || offset == field + 2 {
            0
        } else {
            match *chunk {
                [low, high] => u32::from(u16::from_le_bytes([low, high])),
                [low] => u32::from(low),
                _ => 0,
            }
        };
        sum += word;
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    Ok(sum + length)
}

/// Writes the checksum into `image`.
pub fn write(image: &mut [u8], field: usize) -> Result<u32, String> {
    let checksum = compute(image, field)?;
    let slot = image.get_mut(field..field + 4).ok_or("checksum field outside the image")?;
    slot.copy_from_slice(&checksum.to_le_bytes());
    Ok(checksum)
}

#[cfg(test)]
mod tests {
    use super::{compute, write};

    #[test]
    fn sums_words_skips_the_field_and_adds_the_length() {
        // Words 0x0001, 0x0002, the field (ignored), then the odd byte 0xFF.
        let image = [0x01, 0x00, 0x02, 0x00, 0xAA, 0xBB, 0xCC, 0xDD, 0xFF];
        assert_eq!(compute(&image, 4), Ok(0x0001 + 0x0002 + 0x00FF + 9));
    }

    #[test]
    fn folds_carries() {
        // 0xFFFF + 0xFFFF = 0x1FFFE → 0xFFFF after folding; + 0x0002 = 0x10001 → 0x0002.
        let image = [0xFF, 0xFF, 0xFF, 0xFF, 0x02, 0x00, 0, 0, 0, 0];
        assert_eq!(compute(&image, 6), Ok(0x0002 + 10));
    }

    #[test]
    fn writing_does_not_change_the_result() {
        let mut image: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let checksum = write(&mut image, 0x40).unwrap();
        assert_eq!(image.get(0x40..0x44), Some(&checksum.to_le_bytes()[..]));
        assert_eq!(compute(&image, 0x40), Ok(checksum));
    }

    #[test]
    fn rejects_a_field_outside_the_image() {
        assert!(compute(&[0; 8], 6).is_err());
        assert!(compute(&[0; 8], 3).is_err());
    }
}
