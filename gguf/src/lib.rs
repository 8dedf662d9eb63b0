//! loam-gguf: the GGUF file format (read, dequantize, quantize, write). No libtorch.
