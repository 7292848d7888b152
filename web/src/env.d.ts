// Vite imports the stylesheet for its side effect (it is emitted as a file).
declare module '*.css'
