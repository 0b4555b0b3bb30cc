"""The product's domain and adapters. No Azure Functions imports here."""
