-- arrw's own schema for management functions, views and tables.
CREATE SCHEMA arrw;
