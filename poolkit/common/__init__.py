"""The leaf layer every other layer may import: errors, atomic files, captured library output."""
