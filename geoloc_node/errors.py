"""Exception types of the core: each names what was wrong so that a caller can show it to a person."""


class GeolocError(Exception):
    """Base class of every error the core raises on purpose."""


class CodeLengthError(GeolocError, ValueError):
    """A binary code has a length the operation cannot take (unsupported bits or mismatched bytes)."""


class CoordinateError(GeolocError, ValueError):
    """A coordinate is NaN, infinite or outside its valid range."""


class TableError(GeolocError):
    """A region table file is missing, truncated, corrupt, of another version or of another encoder."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"region table {self.path}: {problem}")


class EmptyTableError(GeolocError, ValueError):
    """An operation needs at least one tile and the table has none."""


class TableBuildError(GeolocError, ValueError):
    """The input imagery, the model or a previous unfinished build cannot be used (the message names the file)."""
