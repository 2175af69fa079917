//! Decoding the memory-type index of a hardware page-table descriptor (`struct cf_map.attr`)
//! with the attribute registers the CPU really runs with (`struct cf_hello.attr_regs`), so the
//! verdict rests on the hardware's view, not on Linux's software bits.
//!
//! * arm32 classic (TEX remap, `SCTLR.TRE = 1`): `n = TEX[0]:C:B`; `PRRR.TRn` (bits `2n+1:2n`)
//!   gives the type (0 strongly-ordered, 1 device, 2 normal); for normal memory `NMRR.IRn`
//!   (bits `2n+1:2n`) and `NMRR.ORn` (bits `16+2n+1:16+2n`) give the cacheability, 0 being
//!   non-cacheable (ARM ARM B4.1.113, B4.1.127; Linux sets PRRR `0xff0a81a8`, NMRR `0x40e040e0`
//!   in `arch/arm/mm/proc-v7-2level.S:113-140`, spec §5.1).
//! * arm32 LPAE and arm64: `AttrIndx` selects byte `AttrIndx` of MAIR (`MAIR0 | MAIR1 << 32` on
//!   LPAE, `MAIR_EL1` on arm64): `0x00` Device-nGnRnE (strongly-ordered), `0x0?` other device
//!   types, `0x44` normal non-cacheable, anything else normal cacheable (`0xff` WBWA, `0xf0`
//!   tagged, `0xaa` WT, `0xee` WB; spec §5.1, §6.1).

use crate::guest::wire;
use reference_impl::observation::MemType;

/// Turns `cf_map.attr` into a [`MemType`] for one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttrDecoder {
    /// `CF_ARCH_*`.
    pub arch: u32,
    /// `cf_hello.attr_regs`.
    pub regs: u64,
}

impl AttrDecoder {
    pub fn new(arch: u32, regs: u64) -> Self {
        AttrDecoder { arch, regs }
    }

    /// The memory type index `attr` (0..=7) stands for.
    pub fn decode(&self, attr: u8) -> MemType {
        let n = u32::from(attr & 7);
        if self.arch == wire::ARCH_ARM32 {
            let prrr = self.regs as u32;
            let nmrr = (self.regs >> 32) as u32;
            match (prrr >> (2 * n)) & 3 {
                0 => MemType::So,
                1 => MemType::Dev,
                2 => {
                    let inner = (nmrr >> (2 * n)) & 3;
                    let outer = (nmrr >> (16 + 2 * n)) & 3;
                    if inner == 0 && outer == 0 {
                        MemType::Nc
                    } else {
                        MemType::Wb
                    }
                }
                // Reserved encoding: UNPREDICTABLE; treat as the strictest type.
                _ => MemType::So,
            }
        } else {
            mair_type((self.regs >> (8 * n)) as u8)
        }
    }
}

/// One MAIR attribute byte (ARM ARM D17.2.97 `MAIR_EL1`; G8.2.102 for AArch32 `MAIR0/1`).
fn mair_type(byte: u8) -> MemType {
    let outer = byte >> 4;
    let inner = byte & 0xf;
    match (outer, inner) {
        (0, 0) => MemType::So,
        (0, _) => MemType::Dev,
        (4, 4) => MemType::Nc,
        // Tagged normal memory (0xf0) and every write-back/write-through encoding.
        _ => MemType::Wb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PRRR/NMRR as `proc-v7-2level.S` programs them.
    const V7_2LEVEL: u64 = 0xff0a_81a8 | (0x40e0_40e0 << 32);
    /// MAIR0/MAIR1 as `proc-v7-3level.S` programs them.
    const V7_LPAE: u64 = 0xeeaa_4400 | (0xff00_0004 << 32);
    /// MAIR_EL1 as `arch/arm64/mm/proc.S` programs it (6.1): NORMAL, NORMAL_TAGGED (0xf0 once
    /// MTE is on, 0xff before), NORMAL_NC, DEVICE_nGnRnE, DEVICE_nGnRE.
    const ARM64: u64 = 0x04_00_44_ff_ff;

    #[test]
    fn arm32_classic_decodes_the_l_pte_mt_types_of_spec_5_1() {
        let d = AttrDecoder::new(wire::ARCH_ARM32, V7_2LEVEL);
        // UNCACHED, BUFFERABLE, WRITETHROUGH, WRITEBACK, DEV_SHARED, -, MINICACHE, WRITEALLOC
        let want =
            [MemType::So, MemType::Nc, MemType::Wb, MemType::Wb, MemType::Dev, MemType::So, MemType::So, MemType::Wb];
        for (n, w) in want.iter().enumerate() {
            assert_eq!(d.decode(n as u8), *w, "n = {n}");
        }
    }

    #[test]
    fn lpae_decodes_attrindx_through_mair() {
        let d = AttrDecoder::new(wire::ARCH_ARM32_LPAE, V7_LPAE);
        assert_eq!(d.decode(0), MemType::So);
        assert_eq!(d.decode(1), MemType::Nc);
        assert_eq!(d.decode(2), MemType::Wb);
        assert_eq!(d.decode(3), MemType::Wb);
        assert_eq!(d.decode(4), MemType::Dev);
        assert_eq!(d.decode(7), MemType::Wb);
    }

    #[test]
    fn arm64_decodes_attrindx_through_mair_el1() {
        let d = AttrDecoder::new(wire::ARCH_ARM64, ARM64);
        assert_eq!(d.decode(0), MemType::Wb);
        assert_eq!(d.decode(1), MemType::Wb);
        assert_eq!(d.decode(2), MemType::Nc);
        assert_eq!(d.decode(3), MemType::So);
        assert_eq!(d.decode(4), MemType::Dev);
        assert_eq!(mair_type(0xf0), MemType::Wb);
    }

    #[test]
    fn a_different_register_value_changes_the_answer() {
        // The decoding follows the registers, not a table: NMRR marking n = 7 non-cacheable makes
        // WRITEALLOC non-cacheable.
        let d = AttrDecoder::new(wire::ARCH_ARM32, 0xff0a_81a8 | (0x0060_0060 << 32));
        assert_eq!(d.decode(7), MemType::Nc);
    }
}
