"""The SQLAlchemy metadata every Vigil table is declared on (one place, so that the
store's table modules can be split without import cycles)."""

from sqlalchemy import MetaData

metadata = MetaData()
