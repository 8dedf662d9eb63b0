//! Dequantizes every tensor of a GGUF file and reports the time taken.
//!
//! `cargo run --release -p loam-gguf --example dequant_all -- FILE.gguf`

use std::time::Instant;

fn main() -> loam_gguf::Result<()> {
    let path = std::env::args()
        .nth(1)
        .expect("usage: dequant_all FILE.gguf");
    let start = Instant::now();
    let f = loam_gguf::GgufFile::open(&path)?;
    let opened = start.elapsed();
    let mut buf = Vec::new();
    let mut n = 0u64;
    let mut checksum = 0f32;
    let start = Instant::now();
    for t in f.tensors() {
        buf.resize(t.n_elements() as usize, 0f32);
        f.dequantize_into(t.name(), &mut buf)?;
        n += t.n_elements();
        checksum += buf[buf.len() / 2];
    }
    let elapsed = start.elapsed();
    println!(
        "{path}: opened in {opened:.2?}; dequantized {} tensors, {n} values in {elapsed:.2?} \
         ({:.0} M values/s; checksum {checksum:.6})",
        f.tensors().len(),
        n as f64 / elapsed.as_secs_f64() / 1e6
    );
    Ok(())
}
