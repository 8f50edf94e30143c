//! What the firmware binaries share: the data bundle embedded at build time (feature
//! `bundle`), the `classify` template's model, the exit path through semihosting (QEMU's exit
//! code), fault handling, and the instruction-count markers.
#![no_std]

use cortex_m_rt::{ExceptionFrame, exception};
use cortex_m_semihosting::debug;
use cortex_m_semihosting::hio::hstdout;

/// The results the desktop computed on the same data (`zeronn export`).
#[cfg(feature = "bundle")]
pub mod expected {
    include!(concat!(env!("OUT_DIR"), "/expected.rs"));
}

/// The trained 784-50-10 model, aligned for use in place from flash.
#[cfg(feature = "bundle")]
pub static MODEL: &[u8] = zeronn::include_model!(concat!(env!("OUT_DIR"), "/model.zrnn"));
/// The 784-50-10 model quantized to int8 (`zeronn quantize`), aligned for use in place.
#[cfg(feature = "bundle")]
pub static MODEL_INT8: &[u8] = zeronn::include_model!(concat!(env!("OUT_DIR"), "/model-int8.zrnn"));
/// Its int8 logits for each test image on the desktop, 10 bytes an image.
#[cfg(feature = "bundle")]
pub static INT8_LOGITS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/int8-logits.i8"));
/// A second model, of any layer list (`expected::MLP_LAYERS`), aligned for use in place.
#[cfg(feature = "bundle")]
pub static MLP: &[u8] = zeronn::include_model!(concat!(env!("OUT_DIR"), "/mlp.zrnn"));
/// The class the desktop predicts with [`MLP`] for each test image.
#[cfg(feature = "bundle")]
pub static MLP_PRED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mlp-pred.u8"));
/// A conv net (SimpleConvNet in CI) of any layer list (`expected::CONV_LAYERS`), aligned for
/// use in place.
#[cfg(feature = "bundle")]
pub static CONV: &[u8] = zeronn::include_model!(concat!(env!("OUT_DIR"), "/conv.zrnn"));
/// The class the desktop predicts with [`CONV`] for each test image.
#[cfg(feature = "bundle")]
pub static CONV_PRED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/conv-pred.u8"));
/// The conv net quantized to int8 (`expected::CONV_INT8_LAYERS`), aligned for use in place.
#[cfg(feature = "bundle")]
pub static CONV_INT8: &[u8] = zeronn::include_model!(concat!(env!("OUT_DIR"), "/conv-int8.zrnn"));
/// Its int8 logits for each test image on the desktop, 10 bytes an image.
#[cfg(feature = "bundle")]
pub static CONV_INT8_LOGITS: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/conv-int8-logits.i8"));
/// Test images, 784 bytes each.
#[cfg(feature = "bundle")]
pub static TEST_X: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/test-x.u8"));
/// Their labels.
#[cfg(feature = "bundle")]
pub static TEST_T: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/test-t.u8"));
/// Training images, 784 bytes each.
#[cfg(feature = "bundle")]
pub static TRAIN_X: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/train-x.u8"));
/// Their labels.
#[cfg(feature = "bundle")]
pub static TRAIN_T: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/train-t.u8"));

/// The model of the `classify` template (ZERONN_MODEL, or the bundle's second model), aligned
/// for use in place from flash.
pub static APP_MODEL: &[u8] = zeronn::include_model!(concat!(env!("OUT_DIR"), "/app.zrnn"));

/// Its layer list, written by the build script from the model file.
pub mod app {
    include!(concat!(env!("OUT_DIR"), "/app.rs"));
}

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

/// Image `i` of `images` in int8 with the parameters `input` (for MNIST's calibration, pixel
/// `b` is `b − 128`), into `out`.
pub fn load_image_int8(images: &[u8], i: usize, input: zeronn::quant::QParams, out: &mut [i8]) {
    for (q, &p) in out.iter_mut().zip(&images[i * PIXELS..(i + 1) * PIXELS]) {
        *q = input.quantize(UNIT[p as usize]);
    }
}

unsafe extern "C" {
    /// End of the statically allocated RAM (cortex-m-rt's linker script).
    static mut __sheap: u32;
}

/// The pattern the unused stack is painted with.
const PAINT: u32 = 0x5afe_c0de;

/// Paints the free RAM between the static data and the current stack pointer (less a margin
/// for this function's own frame), so that [`stack_used`] can find how deep the stack went.
#[inline(never)]
pub fn stack_paint() {
    let bottom = &raw mut __sheap;
    let sp = cortex_m::register::msp::read() as usize - 64;
    let mut p = bottom;
    while (p as usize) < sp {
        // SAFETY: [__sheap, sp - 64) is free RAM: above every static, below the live stack.
        unsafe { p.write_volatile(PAINT) };
        p = p.wrapping_add(1);
    }
}

/// Bytes of stack used since [`stack_paint`], up to the point where `stack_paint` was called:
/// the distance from that point down to the deepest word no longer painted.
#[inline(never)]
pub fn stack_used(painted_from: usize) -> usize {
    let mut p = &raw const __sheap;
    // SAFETY: reads RAM between the statics and the stack, painted by `stack_paint`.
    while (p as usize) < painted_from && unsafe { p.read_volatile() } == PAINT {
        p = p.wrapping_add(1);
    }
    painted_from.saturating_sub(p as usize)
}

/// The current stack pointer.
pub fn stack_pointer() -> usize {
    cortex_m::register::msp::read() as usize
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

/// Writes text to the host's stdout without `core::fmt` (which costs kilobytes of flash).
pub fn print(s: &str) {
    if let Ok(mut out) = hstdout() {
        let _ = out.write_all(s.as_bytes());
    }
}

/// Writes a number in decimal, without `core::fmt`.
pub fn print_u32(mut n: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    print(core::str::from_utf8(&buf[i..]).unwrap_or("?"));
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // Where, without the message: formatting it would pull `core::fmt` into every binary.
    print("panic at ");
    if let Some(l) = info.location() {
        print(l.file());
        print(":");
        print_u32(l.line());
    }
    print("\n");
    exit(false)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    print("hard fault at pc ");
    print_u32(frame.pc());
    print("\n");
    exit(false)
}
