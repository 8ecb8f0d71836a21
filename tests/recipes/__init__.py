"""The web-framework recipes of docs/recipes/, run from the pages themselves."""
