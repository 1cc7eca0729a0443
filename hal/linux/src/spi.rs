//! SPI to the line chips through spidev, with chip select released after
//! every byte.
//!
//! The Si3215 and the Si3050 latch a byte when chip select rises: a register
//! access is 2 bytes (Si3215: address with bit 7 = read, then data) or 3
//! (Si3050: control, address, data), each in its own chip-select cycle. An
//! `embedded_hal::spi::SpiDevice` holds chip select for a whole
//! `transaction`, and linux-embedded-hal's `SpidevDevice` turns one
//! transaction into one `SPI_IOC_MESSAGE` ioctl, which the kernel frames by
//! one chip-select assertion. [`CsPerByte`] therefore splits every
//! transaction into one single-byte transaction per byte: one ioctl, one
//! chip-select cycle each (2-3 ioctls per register access, a few tens of µs:
//! control-plane work, never the rt thread's). Drivers that already send one
//! byte per transaction pass through unchanged.

use embedded_hal::spi::{ErrorType, Operation, SpiDevice};
use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};
use linux_embedded_hal::{SPIError, SpidevDevice};

use crate::devices::SpiMap;

/// A [`SpiDevice`] whose every byte is its own chip-select cycle.
pub struct CsPerByte<D> {
    inner: D,
}

impl<D> CsPerByte<D> {
    pub fn new(inner: D) -> Self {
        CsPerByte { inner }
    }

    pub fn into_inner(self) -> D {
        self.inner
    }
}

impl<D: SpiDevice> ErrorType for CsPerByte<D> {
    type Error = D::Error;
}

impl<D: SpiDevice> SpiDevice for CsPerByte<D> {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), Self::Error> {
        for op in operations {
            match op {
                Operation::Write(bytes) => {
                    for b in bytes.iter() {
                        self.inner.transaction(&mut [Operation::Write(&[*b])])?;
                    }
                }
                Operation::Read(buf) => {
                    for b in buf.iter_mut() {
                        let mut one = [0u8];
                        self.inner.transaction(&mut [Operation::Read(&mut one)])?;
                        *b = one[0];
                    }
                }
                Operation::Transfer(read, write) => {
                    // Clocks max(len) bytes; beyond `write` sends 0, beyond
                    // `read` discards (SpiBus::transfer's contract).
                    for i in 0..read.len().max(write.len()) {
                        let mut one = [write.get(i).copied().unwrap_or(0)];
                        self.inner.transaction(&mut [Operation::TransferInPlace(&mut one)])?;
                        if let Some(r) = read.get_mut(i) {
                            *r = one[0];
                        }
                    }
                }
                Operation::TransferInPlace(buf) => {
                    for b in buf.iter_mut() {
                        let mut one = [*b];
                        self.inner.transaction(&mut [Operation::TransferInPlace(&mut one)])?;
                        *b = one[0];
                    }
                }
                Operation::DelayNs(ns) => self.inner.transaction(&mut [Operation::DelayNs(*ns)])?,
            }
        }
        Ok(())
    }
}

/// Opens a line chip's spidev node: mode, clock and 8-bit words set.
pub fn open_spi(map: &SpiMap) -> Result<CsPerByte<SpidevDevice>, SPIError> {
    let mut dev = SpidevDevice::open(&map.path)?;
    let mode = match map.mode {
        0 => SpiModeFlags::SPI_MODE_0,
        1 => SpiModeFlags::SPI_MODE_1,
        2 => SpiModeFlags::SPI_MODE_2,
        _ => SpiModeFlags::SPI_MODE_3,
    };
    let opts = SpidevOptions::new().bits_per_word(8).max_speed_hz(map.hz).mode(mode).build();
    dev.0.configure(&opts)?;
    Ok(CsPerByte::new(dev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::spi::{Mock, Transaction as T};

    /// One single-byte transaction: start, the op, end.
    fn one(op: T<u8>) -> Vec<T<u8>> {
        vec![T::transaction_start(), op, T::transaction_end()]
    }

    #[test]
    fn a_si3215_register_read_is_two_chip_select_cycles() {
        // Read reg 11 (0x80 | 11), the chip answers 0x33 in the second cycle.
        let expect: Vec<T<u8>> = [one(T::write(0x8B)), one(T::read(0x33))].concat();
        let mut spi = CsPerByte::new(Mock::new(&expect));
        let mut v = [0u8];
        spi.transaction(&mut [Operation::Write(&[0x8B]), Operation::Read(&mut v)]).unwrap();
        assert_eq!(v, [0x33]);
        spi.into_inner().done();
    }

    #[test]
    fn a_si3050_register_write_is_three_chip_select_cycles() {
        // Control 0x20 (write), register 33, value 0x28 (µ-law PCM).
        let expect: Vec<T<u8>> = [one(T::write(0x20)), one(T::write(33)), one(T::write(0x28))].concat();
        let mut spi = CsPerByte::new(Mock::new(&expect));
        spi.write(&[0x20, 33, 0x28]).unwrap();
        spi.into_inner().done();
    }

    #[test]
    fn transfers_are_split_byte_by_byte() {
        let expect: Vec<T<u8>> = [
            one(T::transfer_in_place(vec![0x60], vec![0xAA])),
            one(T::transfer_in_place(vec![0x02], vec![0xBB])),
            one(T::transfer_in_place(vec![0x00], vec![0x03])),
            one(T::transfer_in_place(vec![0x11], vec![0x22])),
            one(T::delay(1000)),
        ]
        .concat();
        let mut spi = CsPerByte::new(Mock::new(&expect));
        let mut read = [0u8; 3];
        let mut inplace = [0x11u8];
        spi.transaction(&mut [
            Operation::Transfer(&mut read, &[0x60, 0x02]),
            Operation::TransferInPlace(&mut inplace),
            Operation::DelayNs(1000),
        ])
        .unwrap();
        assert_eq!(read, [0xAA, 0xBB, 0x03]);
        assert_eq!(inplace, [0x22]);
        spi.into_inner().done();
    }

    /// Counts single-byte transactions and fails the `fail_at`-th.
    struct Failing {
        n: usize,
        fail_at: usize,
    }
    impl ErrorType for Failing {
        type Error = embedded_hal::spi::ErrorKind;
    }
    impl SpiDevice for Failing {
        fn transaction(&mut self, ops: &mut [Operation<'_, u8>]) -> Result<(), Self::Error> {
            assert_eq!(ops.len(), 1, "one operation per chip-select cycle");
            self.n += 1;
            if self.n == self.fail_at {
                return Err(embedded_hal::spi::ErrorKind::Other);
            }
            Ok(())
        }
    }

    #[test]
    fn a_bus_error_stops_the_access() {
        let mut spi = CsPerByte::new(Failing { n: 0, fail_at: 2 });
        assert_eq!(spi.write(&[0x20, 33, 0x28]), Err(embedded_hal::spi::ErrorKind::Other));
        assert_eq!(spi.into_inner().n, 2, "the third byte is not sent after the second failed");
    }

    #[test]
    fn opening_a_missing_spidev_is_an_error() {
        let map = SpiMap {
            chip: 0,
            model: gw_board::ChipModel::Si3215,
            path: "/nonexistent/spidev9.9".into(),
            hz: 1_000_000,
            mode: 3,
        };
        let Err(e) = open_spi(&map) else { panic!("opened {}", map.path) };
        assert_eq!(e.inner().kind(), std::io::ErrorKind::NotFound);
    }
}
