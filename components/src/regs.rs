//! 32-bit device registers.

use sddf_bindings::SharedRegion;

/// A device's 32-bit registers, by byte offset. Drivers are written against
/// this trait; on hardware it is a [`SharedRegion`] over the (uncached)
/// register page, in host tests a model of the device.
pub trait Registers {
    /// Reads the register at `offset`.
    fn read(&mut self, offset: usize) -> u32;
    /// Writes the register at `offset`.
    fn write(&mut self, offset: usize, value: u32);
}

/// Register accesses outside the region (a driver bug) read as 0 and are
/// dropped, with an error logged.
impl Registers for SharedRegion {
    fn read(&mut self, offset: usize) -> u32 {
        self.load::<u32>(offset).unwrap_or_else(|e| {
            log::error!(target: "regs", "register read at {offset:#x}: {e}");
            0
        })
    }

    fn write(&mut self, offset: usize, value: u32) {
        if let Err(e) = self.store(offset, value) {
            log::error!(target: "regs", "register write at {offset:#x}: {e}");
        }
    }
}
