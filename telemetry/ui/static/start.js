/* Last script of the page: everything is registered, start (a file, not inline, for the strict CSP). */
"use strict";
Console.start();
