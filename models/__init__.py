"""Networks and checkpoint I/O: the FSQ motion tokenizer, the Llama-based text-to-motion decoder,
the T5 text encoder, 4-bit loading, and the model-directory manifest."""
