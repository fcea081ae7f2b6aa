"""The formats of ``ggtqc export``; ``ggtqc.export`` picks the pairs and drives them."""
