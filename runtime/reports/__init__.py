"""Reports made from the store: post-mortems, incident metrics and the timings they share."""
