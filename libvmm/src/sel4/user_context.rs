//! `seL4_UserContext` on aarch64 and the mapping from Arm register numbers.

/// Words in `seL4_UserContext` on aarch64.
pub const USER_CONTEXT_WORDS: usize = 36;

/// Index of the program counter (FaultIP, also the restart PC).
pub const PC: usize = 0;
/// Index of SP_EL0.
pub const SP: usize = 1;
/// Index of SPSR.
pub const SPSR: usize = 2;

/// Corresponds to `seL4_UserContext`: pc, sp, spsr, x0-x8, x16-x18, x29,
/// x30, x9-x15, x19-x28, tpidr_el0, tpidrro_el0 (the kernel's
/// `frameRegisters` then `gpRegisters` order).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UserContext {
    /// The raw words in kernel order.
    pub words: [u64; USER_CONTEXT_WORDS],
}

impl Default for UserContext {
    fn default() -> Self {
        UserContext { words: [0; USER_CONTEXT_WORDS] }
    }
}

/// Where general-purpose register `xN` (0..=30) lives in `seL4_UserContext`.
/// Returns `None` for 31, which is XZR in a load/store's Rt field.
pub const fn gpr_index(n: u8) -> Option<usize> {
    Some(match n {
        0..=8 => 3 + n as usize,
        9..=15 => 17 + (n as usize - 9),
        16..=18 => 12 + (n as usize - 16),
        19..=28 => 24 + (n as usize - 19),
        29 => 15,
        30 => 16,
        _ => return None,
    })
}

impl UserContext {
    /// The program counter.
    pub fn pc(&self) -> u64 {
        self.words[PC]
    }

    /// Sets the program counter.
    pub fn set_pc(&mut self, pc: u64) {
        self.words[PC] = pc;
    }

    /// Reads `xN`; register 31 (XZR) reads as zero.
    pub fn gpr(&self, n: u8) -> u64 {
        gpr_index(n).map_or(0, |i| self.words[i])
    }

    /// Writes `xN`; writes to register 31 (XZR) are discarded.
    pub fn set_gpr(&mut self, n: u8, value: u64) {
        if let Some(i) = gpr_index(n) {
            self.words[i] = value;
        }
    }
}

/// How many leading words of `seL4_UserContext` must be read or written to
/// reach `xN` (and the PC, which is word 0).
pub const fn words_to_cover(n: u8) -> usize {
    match gpr_index(n) {
        Some(i) => i + 1,
        None => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gpr_has_a_distinct_slot_outside_pc_sp_spsr() {
        let mut seen = [false; USER_CONTEXT_WORDS];
        for n in 0..=30u8 {
            let i = gpr_index(n).unwrap();
            assert!((3..34).contains(&i), "x{n} -> {i}");
            assert!(!seen[i], "x{n} shares slot {i}");
            seen[i] = true;
        }
        assert_eq!(gpr_index(31), None);
    }

    #[test]
    fn known_slots_match_the_kernel_order() {
        assert_eq!(gpr_index(0), Some(3));
        assert_eq!(gpr_index(8), Some(11));
        assert_eq!(gpr_index(16), Some(12));
        assert_eq!(gpr_index(29), Some(15));
        assert_eq!(gpr_index(30), Some(16));
        assert_eq!(gpr_index(9), Some(17));
        assert_eq!(gpr_index(19), Some(24));
        assert_eq!(gpr_index(28), Some(33));
    }

    #[test]
    fn xzr_reads_zero_and_ignores_writes() {
        let mut ctx = UserContext { words: [7; USER_CONTEXT_WORDS] };
        assert_eq!(ctx.gpr(31), 0);
        ctx.set_gpr(31, 99);
        assert_eq!(ctx.words, [7; USER_CONTEXT_WORDS]);
        assert_eq!(words_to_cover(31), 1);
        assert_eq!(words_to_cover(0), 4);
    }
}
