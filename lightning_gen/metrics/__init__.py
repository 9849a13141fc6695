"""FID / IS / KID / NLL metrics and the feature-extractor registry."""
