use loam_data::{encode::Encoder, Message, Sample, Tokenizer, TrainOn};
fn main() {
    let dir = std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/loam/fixtures/models/smollm2-135m");
    let tok = Tokenizer::from_model_dir(&dir).unwrap();
    let enc = Encoder::new(tok, None, TrainOn::Assistant, true).unwrap();
    let m = |r: &str, c: &str| Message { role: r.into(), content: c.into() };
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(20);
    let msgs = vec![m("system", "You are helpful."), m("user", &long), m("assistant", &long), m("user", &long), m("assistant", &long)];
    let s = Sample::Chat { messages: msgs };
    let n = 2000;
    let t = std::time::Instant::now();
    let mut toks = 0;
    for _ in 0..n { toks += enc.encode(&s).unwrap().input_ids.len(); }
    let dt = t.elapsed().as_secs_f64();
    println!("chat assistant: {:.0} rows/s {:.0} tok/s", n as f64 / dt, toks as f64 / dt);
    let enc2 = Encoder::new(Tokenizer::from_model_dir(&dir).unwrap(), None, TrainOn::All, true).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..n { enc2.encode(&s).unwrap(); }
    println!("chat all: {:.0} rows/s", n as f64 / t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    let tx = Sample::Text { text: long.repeat(4) };
    for _ in 0..n { enc2.encode(&tx).unwrap(); }
    println!("text: {:.0} rows/s", n as f64 / t.elapsed().as_secs_f64());
}
