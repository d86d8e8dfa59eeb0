"""Model loading, decoder-block discovery and the sequential block runner."""
