"""The ground floor: helpers every app may import, importing no app."""
