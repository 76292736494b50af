"""Request and response models, one module per domain: what comes in and what goes out
differ (`JobCreate` / `JobPublic`), and the functions that make the public shapes from rows
sit beside them."""
