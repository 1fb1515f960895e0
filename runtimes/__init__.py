"""One module per runtime behind the `Runtime` protocol of `runtimes.base`."""
