#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| libvmm_fuzz::snd::run(data));
