// ESLint for lib/ (`npm run lint`): typescript-eslint's recommended rules, one off and one tuned below.
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig({
  files: ['lib/**/*.ts'],
  extends: [tseslint.configs.recommended],
  rules: {
    // A comma sequence as a statement is the house idiom for short paired updates, as in native/:
    // `if (st.m && st.v) add('optimizer.m', [n], st.m), add('optimizer.v', [n], st.v);`
    '@typescript-eslint/no-unused-expressions': 'off',
    // `const { inputShape: _, ...rest } = l` drops a key; an `_` name says "unused on purpose".
    '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true, argsIgnorePattern: '^_' }],
  },
});
