//! The baseline for code size: the runtime and the semihosting exit, and nothing else.
#![no_std]
#![no_main]

use cortex_m_rt::entry;

#[entry]
fn main() -> ! {
    zeronn_firmware::exit(true)
}
