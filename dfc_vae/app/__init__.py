"""Programs built on the library: the offline demo and the browser studio."""
