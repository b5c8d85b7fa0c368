"""The service's web pages (storefront demo, merchandiser console) in headless Chromium."""
