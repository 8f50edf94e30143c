//! What the firmware binaries share: the data bundle embedded at build time, the exit path
//! through semihosting (QEMU's exit code), fault handling, and the instruction-count markers.
#![no_std]

use cortex_m_rt::{ExceptionFrame, exception};
use cortex_m_semihosting::{debug, hprintln};

/// The results the desktop computed on the same data (`zeronn export`).
pub mod expected {
    include!(concat!(env!("OUT_DIR"), "/expected.rs"));
}

/// The trained 784-50-10 model, aligned for use in place from flash.
pub static MODEL: &[u8] = zeronn::include_model!(concat!(env!("OUT_DIR"), "/model.zrnn"));
/// Test images, 784 bytes each.
pub static TEST_X: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/test-x.u8"));
/// Their labels.
pub static TEST_T: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/test-t.u8"));
/// Training images, 784 bytes each.
pub static TRAIN_X: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/train-x.u8"));
/// Their labels.
pub static TRAIN_T: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/train-t.u8"));

/// Pixels per image.
pub const PIXELS: usize = 784;

/// `p / 255` for every byte, computed at compile time with the same f32 division as the
/// desktop's loader, so images convert identically here and there.
pub static UNIT: [f32; 256] = {
    let mut t = [0.0f32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as f32 / 255.0;
        i += 1;
    }
    t
};

/// Image `i` of `images` as f32 in [0, 1], into `out`.
pub fn load_image(images: &[u8], i: usize, out: &mut [f32]) {
    for (o, &p) in out.iter_mut().zip(&images[i * PIXELS..(i + 1) * PIXELS]) {
        *o = UNIT[p as usize];
    }
}

/// Ends the run: QEMU exits with 0 on success, 1 otherwise.
pub fn exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    #[allow(clippy::empty_loop)]
    loop {}
}

/// Marks the start of a measured region for the QEMU instruction counter.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn icount_start() {
    cortex_m::asm::nop();
}

/// Marks the end of a measured region (a different body, so the two are not merged).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn icount_stop() {
    cortex_m::asm::nop();
    cortex_m::asm::nop();
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    exit(false)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("hard fault at pc {:#010x}", frame.pc());
    exit(false)
}
