//! AFL target: the png crate's decoder with the transformations `decode_png` asks for,
//! without the engine's palette check (to compare fuzzers on a known bug).

fn decode_unguarded(bytes: &[u8]) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    if let Ok(mut reader) = decoder.read_info() {
        if let Some(size) = reader.output_buffer_size().filter(|&s| s <= 64 << 20) {
            let mut buf = vec![0u8; size];
            let _ = reader.next_frame(&mut buf);
        }
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        decode_unguarded(data);
    });
}
