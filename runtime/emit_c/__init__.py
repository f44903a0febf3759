"""BUNDLE_DIR -> a dependency-free C99 project (runtime/c/ sources + generated headers); only
checked literals reach generated code."""
